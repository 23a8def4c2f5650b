"""Amazon ECR events delivered by EventBridge (API destination or any HTTP relay).

Source: awsdocs/amazon-ecr-user-guide ``doc_source/ecr-eventbridge.md``; FORMATS.md §4.5.
Envelope ``{version, id, detail-type, source: aws.ecr, account, time, region,
resources, detail}``; ``id`` is the dedupe key.

- ``ECR Image Action``: ``detail{result, repository-name, image-digest,
  action-type PUSH|DELETE, image-tag}``; only ``result: SUCCESS`` counts.
- ``ECR Image Scan`` (basic scanning): ``detail{scan-status, repository-name,
  image-digest, image-tags[], finding-severity-counts}``; one scan event per
  tag (none: one untagged event, to be resolved). Counts list only non-zero
  severities, and the object may be absent when nothing was found.
- Every other detail type (Inspector, pull-through cache, ...) is ignored.

The registry host is ``<account>.dkr.ecr.<region>.amazonaws.com``
(``.com.cn`` in the China regions). Authentication is the API destination's
connection: an API-key header, Basic, or OAuth client credentials.
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent, ScanSummary
from conveyor.webhooks import _shared

_ACTION_KINDS = {"PUSH": EventKind.PUSH, "DELETE": EventKind.DELETE}
_SCAN_KINDS = {"COMPLETE": EventKind.SCAN_COMPLETED, "FAILED": EventKind.SCAN_FAILED}
SCANNER = "ecr-basic-scanning"


class EcrWebhook(_shared.ConfiguredAuth):
    """EventBridge events from ``aws.ecr``: image actions and basic scans."""

    sender: ClassVar[str] = "ecr"

    def parse(self, delivery: InboundDelivery) -> list[RegistryEvent]:
        """The push, delete or scan the event reports; other ECR events yield none."""
        root = _shared.load_json(delivery, sender=self.sender)
        if root.text("source") != "aws.ecr":
            return []
        detail_type = root.text("detail-type")
        if detail_type == "ECR Image Action":
            return self._action(root)
        if detail_type == "ECR Image Scan":
            return self._scan(root)
        return []

    def _action(self, root: _shared.Fields) -> list[RegistryEvent]:
        detail = root.obj("detail")
        kind = _ACTION_KINDS.get(detail.text("action-type"))
        if kind is None or detail.opt_text("result") != "SUCCESS":
            return []
        return [
            _shared.make_event(
                kind,
                sender=self.sender,
                delivery_id=root.text("id"),
                registry=_registry(root),
                repository=detail.repository("repository-name"),
                tag=detail.tag("image-tag"),
                digest=detail.digest("image-digest"),
                occurred_at=root.rfc3339("time"),
            )
        ]

    def _scan(self, root: _shared.Fields) -> list[RegistryEvent]:
        detail = root.obj("detail")
        status = detail.text("scan-status")
        kind = _SCAN_KINDS.get(status)
        if kind is None:
            return []
        counts = detail.opt_obj("finding-severity-counts")
        severities = _shared.severity_counts(counts) if counts is not None else {}
        scan = ScanSummary(
            scanner=SCANNER, status=status, severities=severities, total=sum(severities.values())
        )
        tags: list[str | None] = [
            detail.to_tag(tag, f"{detail.child('image-tags')}[{index}]")
            for index, tag in enumerate(detail.texts("image-tags"))
        ] or [None]
        ids = _shared.delivery_ids(root.text("id"), len(tags))
        repository = detail.repository("repository-name")
        digest = detail.digest("image-digest")
        return [
            _shared.make_event(
                kind,
                sender=self.sender,
                delivery_id=delivery_id,
                registry=_registry(root),
                repository=repository,
                tag=tag,
                digest=digest,
                occurred_at=root.rfc3339("time"),
                scan=scan,
            )
            for delivery_id, tag in zip(ids, tags, strict=True)
        ]


def _registry(root: _shared.Fields) -> str | None:
    account = root.opt_text("account")
    region = root.opt_text("region")
    if account is None or region is None or "/" in account + region:
        return None
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}"
