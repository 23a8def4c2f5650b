"""Azure Container Registry webhooks.

Source: MicrosoftDocs/azure-management-docs
``articles/container-registry/container-registry-webhook-reference.md``; FORMATS.md §4.7.
Body: one object ``{id, timestamp, action, target{mediaType, size, digest,
repository, tag}, request{id, host, method, useragent}}``; ``id`` is the
dedupe key. Actions ``push`` and ``delete`` become events; ``quarantine``,
``chart_push``, ``chart_delete`` and the portal's ``ping`` are ignored.
Authentication is whatever custom header the webhook is given.
The Event Grid variant (arrays of ``Microsoft.ContainerRegistry.*`` events
with a validation handshake) is a different format and is not accepted here.
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.webhooks import _shared

_KINDS = {"push": EventKind.PUSH, "delete": EventKind.DELETE}


class AzureWebhook(_shared.ConfiguredAuth):
    """Azure Container Registry webhook deliveries: one event per delivery."""

    sender: ClassVar[str] = "azure"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The pushed or deleted manifest."""
        root = _shared.load_json(delivery, sender=self.sender)
        kind = _KINDS.get(root.text("action"))
        if kind is None:
            return []
        target = root.obj("target")
        request = root.opt_obj("request")
        return [
            _shared.make_event(
                kind,
                sender=self.sender,
                delivery_id=root.text("id"),
                registry=request.opt_text("host") if request is not None else None,
                repository=target.repository("repository"),
                tag=target.tag("tag"),
                digest=target.digest("digest"),
                media_type=target.opt_text("mediaType"),
                occurred_at=root.rfc3339("timestamp"),
            )
        ]
