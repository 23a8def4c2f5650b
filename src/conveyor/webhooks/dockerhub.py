"""Docker Hub repository webhooks.

Source: docker/docs ``content/manuals/docker-hub/repos/manage/webhooks.md``;
FORMATS.md §4.2. Body: ``push_data{pushed_at (unix s), pusher, tag}`` and
``repository{repo_name, namespace, name, ...}``. There is **no digest**, no
event id and no signature: the event needs resolution (HEAD the tag at once,
it may already have moved), the delivery id is the body's digest, and the
``callback_url`` is never called (Docker no longer supports it).
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.core.images import DEFAULT_REGISTRY
from conveyor.webhooks import _shared


class DockerHubWebhook(_shared.ConfiguredAuth):
    """Docker Hub push deliveries: one tag, no digest."""

    sender: ClassVar[str] = "dockerhub"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The pushed tag, to be resolved to a digest from the registry."""
        root = _shared.load_json(delivery, sender=self.sender)
        push_data = root.obj("push_data")
        repository = root.obj("repository")
        name = repository.text("repo_name")
        if "/" not in name:
            name = f"library/{name}"  # official images, as docker names them
        return [
            _shared.make_event(
                EventKind.PUSH,
                sender=self.sender,
                delivery_id=_shared.body_id(delivery.body),
                registry=DEFAULT_REGISTRY,
                repository=repository.to_repository(name, repository.child("repo_name")),
                tag=push_data.to_tag(push_data.text("tag"), push_data.child("tag")),
                digest=None,
                occurred_at=push_data.unix_seconds("pushed_at"),
            )
        ]
