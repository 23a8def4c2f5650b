"""What a poller remembers about a source between polls, and the values of conditional requests.

A poll asks two questions of the registry: did the tag list change, and does
the chosen tag still name the digest seen last time? HTTP answers both
cheaply with validators (RFC 9110 section 8.8: ``ETag``, ``Last-Modified``)
sent back in ``If-None-Match`` / ``If-Modified-Since`` (section 13.1) and a
``304 Not Modified`` reply. The tag list and the tag's digest are separate
questions on purpose: pushing a new image under an existing tag leaves the
tag list unchanged (a 304) while the tag's manifest moved, so a poller must
check the tag even when the list did not change.

Validators are opaque: they are only ever sent back to the registry that gave
them, never compared across registries or parsed. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.core.images import Digest

# Longer validators are not kept (a registry's ETag is a quoted digest or hash).
MAX_VALIDATOR_LENGTH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Validators:
    """The validators of one response, to send back on the next request for it."""

    etag: str | None = None
    last_modified: str | None = None

    def __post_init__(self) -> None:
        for name in ("etag", "last_modified"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or len(value) > MAX_VALIDATOR_LENGTH):
                object.__setattr__(self, name, None)

    def __bool__(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    def request_headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` for these validators (RFC 9110 13.1.2, 13.1.3).

        Both are sent when both are known; a server that understands
        ``If-None-Match`` ignores ``If-Modified-Since`` then (13.2.2).
        """
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True, slots=True, kw_only=True)
class TagListing:
    """A repository's tags, or None when the registry said they did not change (304)."""

    tags: tuple[str, ...] | None
    validators: Validators  # to send next time (empty: the registry gave none)

    @property
    def not_modified(self) -> bool:
        """The registry answered 304 Not Modified to the validators sent."""
        return self.tags is None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagCheck:
    """Whether a tag still names the digest seen before, and what the registry said it names.

    ``digest`` is the registry's claim (``Docker-Content-Digest``), not a
    verified hash: a changed tag is read and hashed before anything uses it.
    ``etag`` belongs to that claimed digest's manifest.
    """

    unchanged: bool
    etag: str | None = None
    digest: Digest | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PollState:
    """What the last poll of a source saw.

    ``rule`` fingerprints the source's definition (registry, repository,
    filter, policy, default): when the definition changes, the remembered
    state no longer applies. ``tag`` and ``digest`` are the version the last
    poll found (None when no tag qualified).
    """

    rule: str
    tags: Validators
    tag: str | None = None
    digest: Digest | None = None
    manifest_etag: str | None = None

    def applies_to(self, rule: str) -> bool:
        """Whether this state was recorded under the same source definition."""
        return self.rule == rule

    def still_names(self, tag: str) -> bool:
        """Whether the last poll chose this tag and read its digest."""
        return self.tag == tag and self.digest is not None
