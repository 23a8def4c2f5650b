"""Quay (quay.io and Red Hat Quay) repository notifications.

Sources: quay/quay ``notifications/__init__.py`` (``build_repository_event_data``),
``endpoints/v2/manifest.py`` (``repo_push`` with ``updated_tags``); FORMATS.md §4.4.
The body does not name the event kind: a body with ``updated_tags`` is a
``repo_push``; anything else (``vulnerability_found``, build and mirror
events) is ignored. There is **no digest, no time and no id**: each tag
needs resolution and the delivery id is the body's digest. Quay signs
nothing; it sends no custom headers (see docs/webhooks.md for Basic auth).
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.webhooks import _shared


class QuayWebhook(_shared.ConfiguredAuth):
    """Quay ``repo_push`` deliveries: one event per updated tag."""

    sender: ClassVar[str] = "quay"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """One push per updated tag, each to be resolved to a digest."""
        root = _shared.load_json(delivery, sender=self.sender)
        if not root.has("updated_tags"):
            return []
        repository = root.repository("repository")
        tags = [
            root.to_tag(tag, f"{root.child('updated_tags')}[{index}]")
            for index, tag in enumerate(root.texts("updated_tags"))
        ]
        ids = _shared.delivery_ids(_shared.body_id(delivery.body), len(tags))
        registry = _shared.host_of(root.opt_text("docker_url"))
        return [
            _shared.make_event(
                EventKind.PUSH,
                sender=self.sender,
                delivery_id=delivery_id,
                registry=registry,
                repository=repository,
                tag=tag,
                digest=None,
                occurred_at=None,
            )
            for delivery_id, tag in zip(ids, tags, strict=True)
        ]
