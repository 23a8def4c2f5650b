"""Registry events: what a webhook delivery says happened, and whether a trigger cares.

Every sender's payload (see ``conveyor.webhooks``) is normalised into
``RegistryEvent`` values. A webhook is a hint, not the truth: where a sender
leaves out the digest (Docker Hub, Quay) or the tag (Harbor and ECR scan
events for untagged artifacts), the event says ``needs_resolution`` and the
service resolves it from the registry before it matches triggers.

Referrers fallback tags (``sha256-<hex>``) and cosign-style ``.sig``/``.att``/
``.sbom`` tags are parsed like any other tag; ``matches_trigger`` is the one
place that refuses them, with a reason the delivery log can show.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import re2

from conveyor.core.images import Digest


class EventKind(StrEnum):
    """What happened to an image; the same strings as a trigger's ``events:``."""

    PUSH = "push"
    SCAN_COMPLETED = "scan_completed"
    SCAN_FAILED = "scan_failed"
    DELETE = "delete"


SCAN_KINDS = frozenset({EventKind.SCAN_COMPLETED, EventKind.SCAN_FAILED})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanSummary:
    """A registry's own scan result, as its event reports it.

    ``severities`` maps lowercase severity names (``critical``, ``high``,
    ``medium``, ``low``, and the sender's own extras such as ``negligible``,
    ``unknown``, ``informational``, ``undefined``) to finding counts.
    """

    scanner: str
    status: str
    severities: dict[str, int] = field(default_factory=dict, hash=False)
    total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEvent:
    """One normalised registry event from one webhook delivery.

    ``repository`` is the repository name inside its registry (``myteam/myapp``);
    ``registry`` is the host the sender named, or None when the payload does
    not say (then the webhook endpoint's configured registry applies).
    ``delivery_id`` is the sender's event or delivery id, or a digest of the
    body where the sender has none (see docs/webhooks.md per sender).
    """

    kind: EventKind
    registry: str | None
    repository: str
    tag: str | None
    digest: Digest | None
    media_type: str | None = None
    scan: ScanSummary | None = None
    delivery_id: str
    occurred_at: datetime | None
    sender: str
    needs_resolution: bool = False


def needs_resolution(kind: EventKind, *, tag: str | None, digest: Digest | None) -> bool:
    """Whether the registry must be asked before this event can be matched or acted on.

    A push or scan without a digest must be resolved (tag to digest); a scan
    without a tag must be resolved too (digest to its tags). A push by digest
    alone is not: the sender said exactly what happened, and an untagged
    manifest is not a new version. Deletes are never resolved: the thing is gone.
    """
    if kind is EventKind.DELETE:
        return False
    if digest is None:
        return True
    return kind in SCAN_KINDS and tag is None


def dedupe_key(
    *, kind: str, registry: str, repository: str, digest: str | None, tag: str | None
) -> str:
    """The identity of what happened, whoever reported it (sha256 hex of the five parts).

    Registries legitimately re-emit identical pushes (retries, re-PUT of the
    same bytes), and several senders can report one push, so the inbox also
    dedupes on this within a time window. ``registry`` is the host the event is
    stored under (an endpoint tied to a configured registry speaks for it).
    """
    parts = [kind, registry, repository, digest or "", tag or ""]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class Headers(Mapping[str, str]):
    """HTTP request headers, looked up case-insensitively.

    Built from a mapping or from (name, value) pairs as str or bytes (ASGI
    gives latin-1 bytes). A header sent twice keeps both values joined by
    ``", "`` (RFC 9110 §5.3), so a doubled auth header never matches a secret.
    """

    __slots__ = ("_items",)

    def __init__(
        self, items: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] = ()
    ) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        merged: dict[str, str] = {}
        for raw_name, raw_value in pairs:
            name = _text(raw_name).lower()
            value = _text(raw_value)
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Values may carry credentials: show names only.
        return f"Headers({sorted(self._items)})"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundDelivery:
    """One HTTP request to a webhook endpoint, as plain values (no I/O)."""

    headers: Headers
    body: bytes
    received_at: datetime

    def __repr__(self) -> str:
        # Never show the body: it may be large and is the sender's data.
        return f"InboundDelivery(headers={self.headers!r}, body=<{len(self.body)} bytes>)"


# OCI distribution-spec v1.1.1 "Referrers Tag Schema": <alg>-<hex>; cosign and
# friends store signatures, attestations and SBOMs under <alg>-<hex>.sig/.att/.sbom.
_REFERRER_TAG = re.compile(r"^sha256-[0-9a-f]{64}$")
_ARTIFACT_SUFFIXES = (".sig", ".att", ".sbom")


def is_referrer_or_signature_tag(tag: str) -> bool:
    """Whether a tag holds referrers, a signature, an attestation or an SBOM, not a version."""
    return bool(_REFERRER_TAG.match(tag)) or tag.endswith(_ARTIFACT_SUFFIXES)


def matches_trigger(
    event: RegistryEvent,
    *,
    repository: str,
    events: Collection[str],
    tag_regex: str | None,
) -> tuple[bool, str]:
    """Whether a ``registry_event`` trigger fires for this event, and why (or why not).

    ``repository`` is the trigger source's repository name, ``events`` its
    event kinds, ``tag_regex`` its RE2 tag filter (unanchored, like Go's
    ``MatchString`` and Flux's tag filter: anchor with ``^…$``). Events
    without a tag never match, except deletes without a tag filter: an
    untagged push (a child manifest of an index, a signature by digest) is
    not a new version. The reason is a sentence for the delivery log.
    """
    if event.kind not in events:
        wanted = ", ".join(sorted(str(kind) for kind in events)) or "none"
        return False, f"event kind '{event.kind}' is not one of the trigger's events ({wanted})"
    if event.repository != repository:
        return False, f"repository '{event.repository}' is not '{repository}'"
    if event.tag is None:
        if event.kind is EventKind.DELETE and tag_regex is None:
            return True, f"delete of {repository}@{event.digest} matches"
        return False, "the event names no tag (untagged artifact, or tags not resolved yet)"
    if is_referrer_or_signature_tag(event.tag):
        return False, f"tag '{event.tag}' is a referrers, signature or attestation tag"
    if tag_regex is not None:
        pattern = _compile(tag_regex)
        if pattern is None:
            return False, f"the trigger's tag filter '{tag_regex}' is not a valid RE2 expression"
        if not pattern.search(event.tag):
            return False, f"tag '{event.tag}' does not match '{tag_regex}'"
    return True, f"{event.kind} of {repository}:{event.tag} matches"


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re2._Regexp | None:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error:
        return None
