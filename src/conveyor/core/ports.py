"""The seams: one small Protocol per integration kind, in core types only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

from conveyor.core.credentials import Secret
from conveyor.core.events import InboundDelivery, RegistryEvent
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.polling import TagCheck, TagListing, Validators


class Registry(Protocol):
    """One OCI Distribution endpoint, as seen with one set of credentials."""

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        """The digest a tag (or digest) names now; raises RegistryError subclasses."""
        ...

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        """Every tag of the repository, de-duplicated, in registry order."""
        ...

    async def created(
        self, repository: Repository, tags: Sequence[str]
    ) -> Mapping[str, datetime | None]:
        """Per tag, the image config's ``created`` time (None when the image has none).

        One config read per tag, so callers cap how many they ask for
        (the ``newest`` policy's ``max_candidates``).
        """
        ...

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        """Copy exactly this digest to another repository; the result has the same digest."""
        ...


@runtime_checkable
class ConditionalRegistry(Protocol):
    """A registry client that can ask "changed since?" (pollers use it when a client offers it).

    Both calls are single requests without retries: a poll that fails is
    retried by the poller at its next, backed-off, interval.
    """

    async def list_tags_if_changed(
        self, repository: Repository, validators: Validators
    ) -> TagListing:
        """The tags, or ``tags=None`` when the registry answers 304 to ``validators``."""
        ...

    async def check_tag(self, ref: ImageRef, *, digest: Digest, etag: str | None) -> TagCheck:
        """Whether ``ref``'s tag still names ``digest`` (a HEAD, conditional on ``etag``)."""
        ...


class WebhookFormat(Protocol):
    """One sender's webhook deliveries: pure, bytes in, events out, so every sender is
    tested from recorded payloads.

    The caller keeps the order cap body, ``verify``, ``parse``, store, reply
    (see ``conveyor.webhooks``). Both methods raise only ``WebhookRejected``.
    """

    sender: ClassVar[str]

    def verify(
        self, delivery: InboundDelivery, secret: Secret, *, auth: str, header: str | None
    ) -> None:
        """Check the delivery's credential in constant time; raises WebhookRejected (401).

        ``auth`` is the endpoint's mode: ``bearer``, ``header`` (secret in the
        header named ``header``), ``hmac-sha256`` (``sha256=<hex>`` of the body
        in ``X-Hub-Signature-256`` or ``header``) or ``basic`` (the password).
        ``oidc`` (a signed token, no secret) is checked by ``webhooks.receive``
        with the endpoint's verifier instead; here it is refused.
        """
        ...

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The events this delivery reports (possibly none: pulls, blobs, pings).

        Raises WebhookRejected (400) naming the problem: content type,
        invalid JSON, or the missing or ill-typed field.
        """
        ...
