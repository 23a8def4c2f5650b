"""Harbor webhooks, in both payload formats a policy can choose.

Sources: goharbor/harbor ``src/pkg/notifier/model/event.go``,
``src/pkg/notifier/formats/{default.go,cloudevents.go}``,
``src/controller/event/handler/webhook/{artifact,scan}``, ``src/pkg/scan/vuln/summary.go``;
FORMATS.md §3.

- Default format: ``type``, ``occur_at`` (unix seconds), ``operator``,
  ``event_data{resources[], repository, scan?}``. It has **no event id**, so
  the delivery id is the composite (type, occur_at, digest, tag) FORMATS.md
  recommends; Harbor's job retries resend the same values.
- CloudEvents format: ``specversion``, ``id`` (the dedupe key), ``type``
  (``harbor.artifact.pushed``, ...), ``time``, ``data`` = the same ``event_data``.

An untagged artifact's push or delete carries the digest in ``tag``; a scan
event of one has no ``tag`` at all (then the tag is resolved from the
registry). SBOM scans (``scan.scan_type: sbom``) are not vulnerability
results and are skipped; pulls, quota, replication and retention are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent, ScanSummary
from conveyor.webhooks import _shared

_DEFAULT_KINDS = {
    "PUSH_ARTIFACT": EventKind.PUSH,
    "DELETE_ARTIFACT": EventKind.DELETE,
    "SCANNING_COMPLETED": EventKind.SCAN_COMPLETED,
    "SCANNING_FAILED": EventKind.SCAN_FAILED,
}
_CLOUDEVENT_KINDS = {
    "harbor.artifact.pushed": EventKind.PUSH,
    "harbor.artifact.deleted": EventKind.DELETE,
    "harbor.scan.completed": EventKind.SCAN_COMPLETED,
    "harbor.scan.failed": EventKind.SCAN_FAILED,
}
# scan_overview is keyed by report MIME type (pkg/scan/rest/v1/spec.go); prefer the
# generic vulnerability report, then Harbor's native one, then whatever is there.
_REPORT_TYPES = (
    "application/vnd.security.vulnerability.report; version=1.1",
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
)


class HarborWebhook(_shared.ConfiguredAuth):
    """Harbor's default payload format; auth is the policy's ``auth_header`` in Authorization."""

    sender: ClassVar[str] = "harbor"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """One event per resource of a push, delete or vulnerability-scan event."""
        root = _shared.load_json(delivery, sender=self.sender)
        event_type = root.text("type")
        kind = _DEFAULT_KINDS.get(event_type)
        if kind is None:
            return []
        occur_at = root.opt_number("occur_at")
        data = root.obj("event_data")

        def composite_id(index: int, resource: _shared.Fields) -> str:
            digest = resource.opt_text("digest") or ""
            tag = resource.opt_text("tag") or ""
            return f"{event_type}|{occur_at}|{digest}|{tag}|{index}"

        return _resources(
            data,
            kind,
            sender=self.sender,
            occurred_at=root.unix_seconds("occur_at"),
            delivery_id=composite_id,
        )


class HarborCloudEventsWebhook(_shared.ConfiguredAuth):
    """Harbor's CloudEvents payload format (Harbor ≥ 2.8, policy ``payload_format``)."""

    sender: ClassVar[str] = "harbor-cloudevents"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """One event per resource of a push, delete or vulnerability-scan CloudEvent."""
        root = _shared.load_json(delivery, sender=self.sender)
        root.text("specversion")
        kind = _CLOUDEVENT_KINDS.get(root.text("type"))
        if kind is None:
            return []
        event_id = root.text("id")
        data = root.obj("data")
        count = len(data.objects("resources"))
        ids = _shared.delivery_ids(event_id, count)
        return _resources(
            data,
            kind,
            sender=self.sender,
            occurred_at=root.rfc3339("time"),
            delivery_id=lambda index, _resource: ids[index],
        )


def _resources(
    data: _shared.Fields,
    kind: EventKind,
    *,
    sender: str,
    occurred_at: datetime | None,
    delivery_id: Callable[[int, _shared.Fields], str],
) -> list[RegistryEvent]:
    scan_info = data.opt_obj("scan")
    if kind in (EventKind.SCAN_COMPLETED, EventKind.SCAN_FAILED) and scan_info is not None:
        if (scan_info.opt_text("scan_type") or "vulnerability") != "vulnerability":
            return []
    repository = _repository(data.obj("repository"))
    result = []
    for index, resource in enumerate(data.objects("resources")):
        digest = resource.digest("digest")
        tag_text = resource.opt_text("tag")
        # Untagged artifacts: Harbor puts the digest where the tag would be.
        tag = (
            None
            if tag_text is None or tag_text == str(digest)
            else resource.to_tag(tag_text, resource.child("tag"))
        )
        scan = None
        if kind in (EventKind.SCAN_COMPLETED, EventKind.SCAN_FAILED):
            scan = _scan_summary(resource.opt_obj("scan_overview"))
        result.append(
            _shared.make_event(
                kind,
                sender=sender,
                delivery_id=delivery_id(index, resource),
                registry=_shared.host_of(resource.opt_text("resource_url")),
                repository=repository,
                tag=tag,
                digest=digest,
                occurred_at=occurred_at,
                scan=scan,
            )
        )
    return result


def _repository(repository: _shared.Fields) -> str:
    full_name = repository.opt_text("repo_full_name")
    if full_name is not None:
        return repository.to_repository(full_name, repository.child("repo_full_name"))
    name = f"{repository.text('namespace')}/{repository.text('name')}"
    return repository.to_repository(name, repository.child("repo_full_name"))


def _scan_summary(overview: _shared.Fields | None) -> ScanSummary | None:
    if overview is None:
        return None
    keys = [key for key, _ in overview.items()]
    chosen = next((key for key in _REPORT_TYPES if overview.has(key)), None)
    if chosen is None:
        chosen = next((key for key in keys if overview.has(key)), None)
    if chosen is None:
        return None
    report = overview.obj(chosen)
    scanner = report.opt_obj("scanner")
    summary = report.opt_obj("summary")
    counts = summary.opt_obj("summary") if summary is not None else None
    severities = _shared.severity_counts(counts) if counts is not None else {}
    total = summary.opt_number("total") if summary is not None else None
    return ScanSummary(
        scanner=(scanner.opt_text("name") if scanner is not None else None) or "unknown",
        status=report.opt_text("scan_status") or "unknown",
        severities=severities,
        total=int(total) if total is not None else sum(severities.values()),
    )
