"""Google Artifact Registry notifications, delivered by a Pub/Sub push subscription.

Sources: cloud.google.com/artifact-registry/docs/configure-notifications;
Pub/Sub "Push subscriptions" and "Payload unwrapping"; FORMATS.md §4.6.

- Wrapped (default) body: ``{message{data (base64), attributes, messageId,
  publishTime}, subscription}``; ``messageId`` is the dedupe key.
- Unwrapped body (``--push-no-wrapper``): the message data itself, with the id
  in ``X-Goog-Pubsub-Message-Id`` when metadata is written (else the body's digest).
- The message data: ``{action: INSERT|DELETE, digest, tag}`` where ``digest``
  and ``tag`` are **full image references** (``host/project/repo/image@sha256:…``,
  ``…:tag``); either may be missing. The registry host and the repository
  (``project/repo/image``) come from them.

Pub/Sub authenticates with a Google-signed OIDC JWT in Authorization: configure
``auth: oidc``, checked by ``conveyor.webhooks.oidc`` (not by this class's
``verify``) against keys passed in; see docs/webhooks.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.core.images import ImageRef
from conveyor.webhooks import _shared

_KINDS = {"INSERT": EventKind.PUSH, "DELETE": EventKind.DELETE}


class GarWebhook(_shared.ConfiguredAuth):
    """Artifact Registry's ``gcr`` topic messages, wrapped or unwrapped."""

    sender: ClassVar[str] = "gar"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The inserted or deleted image the message names."""
        root = _shared.load_json(delivery, sender=self.sender)
        message = root.opt_obj("message")
        if message is None:
            data = root
            delivery_id = delivery.headers.get("x-goog-pubsub-message-id", "").strip()
            occurred_at = None
        else:
            data = _decode_data(message)
            delivery_id = message.opt_text("messageId") or message.text("message_id")
            occurred_at = message.rfc3339("publishTime") or message.rfc3339("publish_time")
        kind = _KINDS.get(data.text("action"))
        if kind is None:
            return []
        by_digest = data.image_ref("digest")
        by_tag = data.image_ref("tag")
        reference = by_digest or by_tag
        if reference is None:
            data.fail(data.child("digest"), "is missing (the message names neither digest nor tag)")
        if by_digest is not None and by_digest.digest is None:
            data.fail(data.child("digest"), "has no @sha256:<hex> digest")
        if by_tag is not None and by_tag.tag is None:
            data.fail(data.child("tag"), "has no :tag")
        if by_digest and by_tag and by_digest.repository != by_tag.repository:
            data.fail(data.child("tag"), "names another repository than 'digest'")
        return [
            _shared.make_event(
                kind,
                sender=self.sender,
                delivery_id=delivery_id or _shared.body_id(delivery.body),
                registry=reference.repository.registry,
                repository=reference.repository.name,
                tag=_tag(by_tag),
                digest=by_digest.digest if by_digest is not None else None,
                occurred_at=occurred_at,
            )
        ]


def _tag(reference: ImageRef | None) -> str | None:
    return reference.tag if reference is not None else None


def _decode_data(message: _shared.Fields) -> _shared.Fields:
    path = message.child("data")
    try:
        raw = base64.b64decode(message.text("data").encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        message.fail(path, "is not base64")
    decoded = _shared.decode_json(raw, sender=message.sender, what=f"field '{path}'")
    return _shared.Fields(decoded, path=path, sender=message.sender)
