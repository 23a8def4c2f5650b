"""CNCF distribution (``docker-registry``) notifications.

Source: distribution v2.8.2 ``notifications/event.go`` and ``bridge.go``;
FORMATS.md §2. One envelope carries ``events[]``, each with its own ``id``
(stable across the registry's endless retries: the dedupe key). Only manifest
``push`` and ``delete`` events become RegistryEvents: blob events (always
``application/octet-stream``), ``pull`` and ``mount`` are dropped here.
Referrers fallback tags and signature tags are kept; ``matches_trigger``
refuses them.

A manifest delete by digest arrives as ``{digest, repository}`` plus one
``{repository, tag}`` delete per tag that pointed at it. A blob delete looks
exactly like a manifest delete (bridge.go sets the same two fields), so it
cannot be told apart.
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.webhooks import _shared

# event.go: layers and other blobs always carry this media type.
BLOB_MEDIA_TYPE = "application/octet-stream"
_KINDS = {"push": EventKind.PUSH, "delete": EventKind.DELETE}


class DistributionWebhook(_shared.ConfiguredAuth):
    """The registry's ``notifications:`` endpoint; auth is a static header from its config."""

    sender: ClassVar[str] = "distribution"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """Manifest pushes and deletes of the envelope, in order."""
        root = _shared.load_json(delivery, sender=self.sender)
        result = []
        for item in root.objects("events"):
            event = self._event(item)
            if event is not None:
                result.append(event)
        return result

    def _event(self, item: _shared.Fields) -> RegistryEvent | None:
        kind = _KINDS.get(item.text("action"))
        if kind is None:
            return None  # pull, mount: nothing changed in what a tag names
        target = item.obj("target")
        media_type = target.opt_text("mediaType")
        if media_type == BLOB_MEDIA_TYPE:
            return None
        repository = target.repository("repository")
        tag = target.tag("tag")
        digest = target.digest("digest", required=kind is EventKind.PUSH)
        if digest is None and tag is None:
            target.fail(target.child("digest"), "is missing (a delete names a digest or a tag)")
        request = item.opt_obj("request")
        registry = request.opt_text("host") if request is not None else None
        return _shared.make_event(
            kind,
            sender=self.sender,
            delivery_id=item.text("id"),
            registry=registry or _shared.host_of(target.opt_text("url")),
            repository=repository,
            tag=tag,
            digest=digest,
            media_type=media_type,
            occurred_at=item.rfc3339("timestamp"),
        )
