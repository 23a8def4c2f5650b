"""GitHub Packages (GHCR) webhooks: the ``registry_package`` and ``package`` events.

Sources: octokit/webhooks ``payload-schemas/api.github.com/registry_package/
published.schema.json`` and the ``published.docker.payload.json`` examples;
docs.github.com "Validating webhook deliveries"; FORMATS.md §4.3.

- ``X-GitHub-Event`` names the event: ``registry_package`` and ``package``
  carry the same object under their own key; ``ping`` (sent when the hook is
  created) and every other event yield no events.
- Actions ``published`` and ``updated`` are pushes.
- ``package_version.version`` (= ``name`` = ``container_metadata.tag.digest``)
  is the manifest digest; the tag is ``container_metadata.tag.name``, empty
  for untagged pushes. ``package_type`` is ``CONTAINER`` in deliveries and
  ``container`` in the schema: compared case-insensitively.
- ``X-GitHub-Delivery`` is the dedupe key (kept on manual redelivery).
- Auth is normally ``hmac-sha256``: ``X-Hub-Signature-256: sha256=<hex>``
  over the raw body. Nothing in it covers time, so replays are caught only by
  the delivery-id dedupe.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from conveyor.core.errors import WebhookRejected
from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent
from conveyor.core.images import Digest
from conveyor.webhooks import _shared

GHCR = "ghcr.io"
_PACKAGE_EVENTS = ("registry_package", "package")
_PUSH_ACTIONS = ("published", "updated")
# GitHub writes "never" as Go's zero time.
_ZERO_TIME_YEAR = 1


class GitHubWebhook(_shared.ConfiguredAuth):
    """GitHub ``registry_package`` / ``package`` deliveries for container packages."""

    sender: ClassVar[str] = "github"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The published container version; other events and package types yield none."""
        event_name = delivery.headers.get("x-github-event")
        if event_name is None or not event_name.strip():
            raise WebhookRejected("github: missing X-GitHub-Event header")
        root = _shared.load_json(delivery, sender=self.sender)
        event_name = event_name.strip().lower()
        if event_name not in _PACKAGE_EVENTS:
            return []
        if root.text("action") not in _PUSH_ACTIONS:
            return []
        package = root.obj(event_name)
        if (package.opt_text("package_type") or "").lower() != "container":
            return []
        version = package.obj("package_version")
        metadata = version.opt_obj("container_metadata")
        tag_info = metadata.opt_obj("tag") if metadata is not None else None
        manifest = metadata.opt_obj("manifest") if metadata is not None else None
        return [
            _shared.make_event(
                EventKind.PUSH,
                sender=self.sender,
                delivery_id=_delivery_id(delivery),
                registry=GHCR,
                repository=_repository(package, root),
                tag=tag_info.tag("name") if tag_info is not None else None,
                digest=_digest(version, tag_info),
                media_type=manifest.opt_text("media_type") if manifest is not None else None,
                occurred_at=_time(version) or _time(package),
            )
        ]


def _delivery_id(delivery: InboundDelivery) -> str:
    given = delivery.headers.get("x-github-delivery", "").strip()
    return given or _shared.body_id(delivery.body)


def _repository(package: _shared.Fields, root: _shared.Fields) -> str:
    namespace = package.opt_text("namespace")
    if namespace is None:
        owner = package.opt_obj("owner") or root.obj("repository").obj("owner")
        namespace = owner.text("login")
    # GHCR names are lowercase even when the owner's login is not.
    name = f"{namespace}/{package.text('name')}".lower()
    return package.to_repository(name, package.child("name"))


def _digest(version: _shared.Fields, tag_info: _shared.Fields | None) -> Digest:
    if tag_info is not None and tag_info.has("digest"):
        return tag_info.to_digest(tag_info.text("digest"), tag_info.child("digest"))
    for key in ("version", "name"):
        text = version.opt_text(key)
        if text is not None and text.startswith("sha256:"):
            return version.to_digest(text, version.child(key))
    version.fail(version.child("version"), "is missing (expected the manifest digest)")


def _time(fields: _shared.Fields) -> datetime | None:
    value = fields.rfc3339("updated_at")
    return None if value is None or value.year == _ZERO_TIME_YEAR else value
