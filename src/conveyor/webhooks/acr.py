"""Alibaba Cloud Container Registry triggers (webhooks).

Source: alibabacloud.com/help/doc-detail/60949.htm ("Manage triggers"); FORMATS.md §4.1.
Body: ``push_data{digest, pushed_at, tag}`` and ``repository{repo_full_name,
namespace, name, region, ...}``. A trigger fires only on pushes. There is no
event id (the delivery id is the body's digest) and no signature (the sender
cannot add headers: see docs/webhooks.md).

``pushed_at`` is ``YYYY-MM-DD HH:MM:SS`` with no zone; it looks like the
region's local time, which is not documented, so ``occurred_at`` stays None
rather than guess. The payload names no registry host either (personal and
enterprise instances differ), so the endpoint's configured registry applies.
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.webhooks import _shared


class AcrWebhook(_shared.ConfiguredAuth):
    """Alibaba ACR trigger deliveries: one push per delivery."""

    sender: ClassVar[str] = "acr"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The pushed tag (and its digest, when the trigger sends one)."""
        root = _shared.load_json(delivery, sender=self.sender)
        push_data = root.obj("push_data")
        repository = root.obj("repository")
        full_name = repository.opt_text("repo_full_name")
        if full_name is None:
            full_name = f"{repository.text('namespace')}/{repository.text('name')}"
        tag = push_data.text("tag")
        return [
            _shared.make_event(
                EventKind.PUSH,
                sender=self.sender,
                delivery_id=_shared.body_id(delivery.body),
                registry=None,
                repository=repository.to_repository(full_name, repository.child("repo_full_name")),
                tag=push_data.to_tag(tag, push_data.child("tag")),
                digest=push_data.digest("digest", required=False),
                occurred_at=None,
            )
        ]
