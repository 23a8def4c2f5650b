"""Every sender's recorded payload parses into the exact normalised events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from conveyor.core.events import EventKind, RegistryEvent, ScanSummary
from conveyor.core.images import Digest
from conveyor.webhooks import FORMATS

from .helpers import delivery, payload

MANIFEST = Digest("sha256", "ee57179a2e86216b08bee6bc4e60a380c4202d19da93c7f59d3788d00424f4d1")
INDEX = Digest("sha256", "f0960dff62925d1b74256e812c60ba7a53bf467a868d27b64f5ce8e500492905")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TAG = "myapp-V1.4.2"
REPOSITORY = "myteam/myapp"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def body_id(name: str) -> str:
    return f"body:{Digest.of(payload(name))}"


EXPECTED = [
    pytest.param(
        "distribution",
        "distribution-push",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="127.0.0.1:5000",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                media_type=OCI_MANIFEST,
                delivery_id="a11959a1-d07c-5ae8-be78-da6171d5fb19",
                occurred_at=at("2026-11-28T10:15:42.918273"),
                sender="distribution",
            )
        ],
        id="distribution-push",
    ),
    pytest.param(
        "distribution",
        "distribution-push-index",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="127.0.0.1:5000",
                repository=REPOSITORY,
                tag="myapp-V1.4.3",
                digest=INDEX,
                media_type="application/vnd.oci.image.index.v1+json",
                delivery_id="3800c4fc-1bfa-52a3-a0c9-889a663859d6",
                occurred_at=at("2026-11-28T11:02:07.004512"),
                sender="distribution",
            )
        ],
        id="distribution-push-index",
    ),
    pytest.param("distribution", "distribution-push-blob", {}, [], id="distribution-blob-ignored"),
    pytest.param("distribution", "distribution-mount", {}, [], id="distribution-mount-ignored"),
    pytest.param("distribution", "distribution-pull-head", {}, [], id="distribution-pull-ignored"),
    pytest.param(
        "distribution",
        "distribution-delete-manifest",
        {},
        [
            RegistryEvent(
                kind=EventKind.DELETE,
                registry="127.0.0.1:5000",
                repository=REPOSITORY,
                tag=None,
                digest=MANIFEST,
                delivery_id="44da208b-44d6-58e5-b9c4-cb766c34892b",
                occurred_at=at("2026-11-28T13:00:00.101010"),
                sender="distribution",
            )
        ],
        id="distribution-delete-manifest",
    ),
    pytest.param(
        "distribution",
        "distribution-delete-tag",
        {},
        [
            RegistryEvent(
                kind=EventKind.DELETE,
                registry="127.0.0.1:5000",
                repository=REPOSITORY,
                tag=TAG,
                digest=None,
                delivery_id="d5b2db57-7588-577b-9150-a9f6236838b9",
                occurred_at=at("2026-11-28T13:00:00.102938"),
                sender="distribution",
            )
        ],
        id="distribution-delete-tag",
    ),
    pytest.param(
        "harbor",
        "harbor-push-artifact",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="harbor.example.com",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                delivery_id=f"PUSH_ARTIFACT|1795860942|{MANIFEST}|{TAG}|0",
                occurred_at=at("2026-11-28T10:15:42"),
                sender="harbor",
            )
        ],
        id="harbor-push",
    ),
    pytest.param(
        "harbor",
        "harbor-scanning-completed",
        {},
        [
            RegistryEvent(
                kind=EventKind.SCAN_COMPLETED,
                registry="harbor.example.com",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                scan=ScanSummary(
                    scanner="Trivy",
                    status="Success",
                    severities={"critical": 0, "high": 2, "medium": 3, "low": 2},
                    total=7,
                ),
                delivery_id=f"SCANNING_COMPLETED|1795861010|{MANIFEST}|{TAG}|0",
                occurred_at=at("2026-11-28T10:16:50"),
                sender="harbor",
            )
        ],
        id="harbor-scan-completed",
    ),
    pytest.param(
        "harbor-cloudevents",
        "harbor-push-artifact-cloudevents",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="harbor.example.com",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                delivery_id="4c7ec267-f4fe-5139-b49f-3994d9e4186c",
                occurred_at=at("2026-11-28T10:15:42"),
                sender="harbor-cloudevents",
            )
        ],
        id="harbor-cloudevents-push",
    ),
    pytest.param(
        "acr",
        "acr-push",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry=None,
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                delivery_id=body_id("acr-push"),
                occurred_at=None,
                sender="acr",
            )
        ],
        id="acr-push",
    ),
    pytest.param(
        "azure",
        "azure-acr-push",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="myregistry.azurecr.io",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                media_type=OCI_MANIFEST,
                delivery_id="dda25ef8-280f-5730-a968-0ea16f870c0e",
                occurred_at=at("2026-11-28T10:15:42.343145"),
                sender="azure",
            )
        ],
        id="azure-push",
    ),
    pytest.param(
        "azure",
        "azure-acr-delete",
        {},
        [
            RegistryEvent(
                kind=EventKind.DELETE,
                registry="myregistry.azurecr.io",
                repository=REPOSITORY,
                tag=None,
                digest=MANIFEST,
                media_type=OCI_MANIFEST,
                delivery_id="d503e94f-da1e-5922-8943-c268cdecb79f",
                occurred_at=at("2026-11-28T13:00:00.657764"),
                sender="azure",
            )
        ],
        id="azure-delete",
    ),
    pytest.param(
        "dockerhub",
        "dockerhub-push",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="docker.io",
                repository=REPOSITORY,
                tag=TAG,
                digest=None,
                delivery_id=body_id("dockerhub-push"),
                occurred_at=at("2026-11-28T10:15:42"),
                sender="dockerhub",
                needs_resolution=True,
            )
        ],
        id="dockerhub-push-needs-digest",
    ),
    pytest.param(
        "github",
        "github-package-published",
        {"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "72d3162e-cc78-11e3"},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="ghcr.io",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                media_type=OCI_MANIFEST,
                delivery_id="72d3162e-cc78-11e3",
                occurred_at=at("2026-11-28T10:15:44"),
                sender="github",
            )
        ],
        id="github-registry-package",
    ),
    pytest.param(
        "quay",
        "quay-push",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="quay.io",
                repository=REPOSITORY,
                tag=TAG,
                digest=None,
                delivery_id=body_id("quay-push"),
                occurred_at=None,
                sender="quay",
                needs_resolution=True,
            )
        ],
        id="quay-push-needs-digest",
    ),
    pytest.param(
        "ecr",
        "ecr-image-action",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                delivery_id="d4a62c85-8152-5108-9b2e-697be7d263d1",
                occurred_at=at("2026-11-28T10:15:43"),
                sender="ecr",
            )
        ],
        id="ecr-image-action",
    ),
    pytest.param(
        "ecr",
        "ecr-image-scan",
        {},
        [
            RegistryEvent(
                kind=EventKind.SCAN_COMPLETED,
                registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                repository=REPOSITORY,
                tag=TAG,
                digest=MANIFEST,
                scan=ScanSummary(
                    scanner="ecr-basic-scanning",
                    status="COMPLETE",
                    severities={"high": 2, "medium": 3, "low": 2},
                    total=7,
                ),
                delivery_id="ddbfdf90-86ca-5f69-a6f8-58ae24c3c031",
                occurred_at=at("2026-11-28T10:16:58"),
                sender="ecr",
            )
        ],
        id="ecr-image-scan",
    ),
    pytest.param(
        "gar",
        "gar-pubsub-insert",
        {},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="europe-west1-docker.pkg.dev",
                repository="my-project/myteam/myapp",
                tag=TAG,
                digest=MANIFEST,
                delivery_id="13579246801357924",
                occurred_at=at("2026-11-28T10:15:43.512"),
                sender="gar",
            )
        ],
        id="gar-pubsub-push",
    ),
    pytest.param(
        "gar",
        "gar-message-insert",
        {"X-Goog-Pubsub-Message-Id": "13579246801357924"},
        [
            RegistryEvent(
                kind=EventKind.PUSH,
                registry="europe-west1-docker.pkg.dev",
                repository="my-project/myteam/myapp",
                tag=TAG,
                digest=MANIFEST,
                delivery_id="13579246801357924",
                occurred_at=None,
                sender="gar",
            )
        ],
        id="gar-unwrapped-push",
    ),
]


class TestRecordedPayloads:
    @pytest.mark.parametrize(("name", "fixture", "headers", "expected"), EXPECTED)
    def test_parses_into_expected_events(
        self, name: str, fixture: str, headers: dict[str, str], expected: list[RegistryEvent]
    ) -> None:
        """The recorded payload parses into exactly the expected normalised events."""
        assert FORMATS[name].parse(delivery(payload(fixture), **headers)) == expected

    def test_every_format_has_a_recorded_payload(self) -> None:
        """Each name in the FORMATS table is covered by at least one recorded payload."""
        covered = {case.values[0] for case in EXPECTED}
        assert covered == set(FORMATS)

    def test_every_sender_is_named_by_its_table_key(self) -> None:
        """The FORMATS key is the implementation's sender name."""
        assert {name: type(fmt).sender for name, fmt in FORMATS.items()} == {
            name: name for name in FORMATS
        }


def mutate(name: str, change: dict[str, object]) -> bytes:
    """The recorded payload with dotted paths replaced (None deletes)."""
    data = json.loads(payload(name))
    for path, value in change.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return json.dumps(data).encode()


class TestSenderRules:
    def test_distribution_keeps_manifests_of_a_mixed_envelope(self) -> None:
        """An envelope of blob, pull and manifest events yields only the manifest push."""
        events = [
            json.loads(payload(name))["events"][0]
            for name in ("distribution-push-blob", "distribution-pull-head", "distribution-push")
        ]
        body = json.dumps({"events": events}).encode()
        parsed = FORMATS["distribution"].parse(
            delivery(body, "application/vnd.docker.distribution.events.v1+json")
        )
        assert [(event.kind, event.tag) for event in parsed] == [(EventKind.PUSH, TAG)]

    def test_distribution_keeps_referrers_tag_for_the_trigger_to_refuse(self) -> None:
        """A push of the referrers fallback tag is parsed, tag and all."""
        tag = f"sha256-{MANIFEST.hex}"
        body = mutate("distribution-push", {"events.0.target.tag": tag})
        (event,) = FORMATS["distribution"].parse(delivery(body))
        assert event.tag == tag

    def test_distribution_push_by_digest_needs_no_resolution(self) -> None:
        """A manifest pushed without a tag is an untagged push, not something to resolve."""
        body = mutate("distribution-push", {"events.0.target.tag": None})
        (event,) = FORMATS["distribution"].parse(delivery(body))
        assert (event.tag, event.needs_resolution) == (None, False)

    def test_harbor_untagged_push_has_no_tag(self) -> None:
        """Harbor's digest-in-the-tag-field for untagged artifacts becomes no tag."""
        body = mutate("harbor-push-artifact", {"event_data.resources.0.tag": str(MANIFEST)})
        (event,) = FORMATS["harbor"].parse(delivery(body))
        assert (event.tag, event.digest, event.needs_resolution) == (None, MANIFEST, False)

    def test_harbor_scan_without_tag_needs_resolution(self) -> None:
        """A Harbor scan event without a tag must have its tags resolved from the registry."""
        body = mutate("harbor-scanning-completed", {"event_data.resources.0.tag": None})
        (event,) = FORMATS["harbor"].parse(delivery(body))
        assert (event.tag, event.needs_resolution) == (None, True)

    def test_harbor_scan_failed(self) -> None:
        """SCANNING_FAILED becomes a scan_failed event carrying the report's status."""
        data = json.loads(payload("harbor-scanning-completed"))
        data["type"] = "SCANNING_FAILED"
        (report,) = data["event_data"]["resources"][0]["scan_overview"].values()
        report["scan_status"] = "Error"
        body = json.dumps(data).encode()
        (event,) = FORMATS["harbor"].parse(delivery(body))
        assert event.kind is EventKind.SCAN_FAILED
        assert event.scan is not None and event.scan.status == "Error"

    @pytest.mark.parametrize(
        "event_type", ["PULL_ARTIFACT", "QUOTA_EXCEED", "REPLICATION", "SCANNING_STOPPED"]
    )
    def test_harbor_ignores_other_event_types(self, event_type: str) -> None:
        """Harbor events that change no artifact yield no events."""
        body = mutate("harbor-push-artifact", {"type": event_type})
        assert FORMATS["harbor"].parse(delivery(body)) == []

    def test_harbor_sbom_scan_is_skipped(self) -> None:
        """An SBOM generation is not a vulnerability scan and yields no event."""
        body = mutate("harbor-scanning-completed", {"event_data.scan": {"scan_type": "sbom"}})
        assert FORMATS["harbor"].parse(delivery(body)) == []

    def test_harbor_cloudevents_accepts_its_content_type(self) -> None:
        """Harbor's CloudEvents deliveries are accepted with application/cloudevents+json."""
        body = payload("harbor-push-artifact-cloudevents")
        content_type = "application/cloudevents+json; charset=utf-8"
        (event,) = FORMATS["harbor-cloudevents"].parse(delivery(body, content_type))
        assert event.kind is EventKind.PUSH

    @pytest.mark.parametrize("event_name", ["package", "PACKAGE"])
    def test_github_package_event_is_accepted(self, event_name: str) -> None:
        """The older 'package' event carries the same object under 'package'."""
        data = json.loads(payload("github-package-published"))
        data["package"] = data.pop("registry_package")
        body = json.dumps(data).encode()
        headers = {"X-GitHub-Event": event_name, "X-GitHub-Delivery": "d-1"}
        (event,) = FORMATS["github"].parse(delivery(body, **headers))
        assert (event.repository, event.tag, event.digest) == (REPOSITORY, TAG, MANIFEST)

    @pytest.mark.parametrize(
        ("event_name", "change"),
        [
            pytest.param("ping", {}, id="ping"),
            pytest.param("push", {}, id="other-event"),
            pytest.param("registry_package", {"action": "deleted"}, id="other-action"),
            pytest.param(
                "registry_package", {"registry_package.package_type": "npm"}, id="npm-package"
            ),
        ],
    )
    def test_github_ignores_what_is_not_a_container_push(
        self, event_name: str, change: dict[str, object]
    ) -> None:
        """Pings, other events, other actions and other package types yield no events."""
        body = mutate("github-package-published", change)
        assert FORMATS["github"].parse(delivery(body, **{"X-GitHub-Event": event_name})) == []

    def test_github_untagged_version(self) -> None:
        """An untagged GHCR version has no tag and needs no resolution."""
        body = mutate(
            "github-package-published",
            {"registry_package.package_version.container_metadata.tag.name": ""},
        )
        headers = {"X-GitHub-Event": "registry_package"}
        (event,) = FORMATS["github"].parse(delivery(body, **headers))
        assert (event.tag, event.digest, event.needs_resolution) == (None, MANIFEST, False)

    def test_github_without_delivery_header_uses_the_body_digest(self) -> None:
        """Without X-GitHub-Delivery the delivery id falls back to the body's digest."""
        body = payload("github-package-published")
        headers = {"X-GitHub-Event": "registry_package"}
        (event,) = FORMATS["github"].parse(delivery(body, **headers))
        assert event.delivery_id == f"body:{Digest.of(body)}"

    def test_quay_one_event_per_updated_tag(self) -> None:
        """A Quay push naming two tags becomes two events with distinct delivery ids."""
        body = mutate("quay-push", {"updated_tags": ["a-1", "b-2"]})
        events = FORMATS["quay"].parse(delivery(body))
        assert [event.tag for event in events] == ["a-1", "b-2"]
        assert len({event.delivery_id for event in events}) == 2

    def test_quay_ignores_vulnerability_found(self) -> None:
        """A Quay body without updated_tags is not a push and yields no events."""
        body = mutate("quay-push", {"updated_tags": None, "vulnerability": {"id": "CVE-1"}})
        assert FORMATS["quay"].parse(delivery(body)) == []

    def test_ecr_scan_without_tags_needs_resolution(self) -> None:
        """An ECR scan of an untagged image is one event whose tags must be resolved."""
        body = mutate("ecr-image-scan", {"detail.image-tags": []})
        (event,) = FORMATS["ecr"].parse(delivery(body))
        assert (event.tag, event.needs_resolution) == (None, True)

    def test_ecr_scan_failed_and_no_findings(self) -> None:
        """A failed ECR scan without severity counts is a scan_failed with an empty summary."""
        body = mutate(
            "ecr-image-scan",
            {"detail.scan-status": "FAILED", "detail.finding-severity-counts": None},
        )
        (event,) = FORMATS["ecr"].parse(delivery(body))
        assert event.kind is EventKind.SCAN_FAILED
        assert event.scan == ScanSummary(
            scanner="ecr-basic-scanning", status="FAILED", severities={}, total=0
        )

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"detail.result": "FAILURE"}, id="failed-action"),
            pytest.param({"detail-type": "ECR Pull Through Cache Action"}, id="other-type"),
            pytest.param({"source": "aws.inspector2"}, id="other-source"),
        ],
    )
    def test_ecr_ignores_other_events(self, change: dict[str, object]) -> None:
        """Failed actions and other EventBridge events yield no events."""
        assert FORMATS["ecr"].parse(delivery(mutate("ecr-image-action", change))) == []

    def test_ecr_delete(self) -> None:
        """An ECR DELETE action becomes a delete event."""
        body = mutate("ecr-image-action", {"detail.action-type": "DELETE"})
        (event,) = FORMATS["ecr"].parse(delivery(body))
        assert event.kind is EventKind.DELETE

    def test_ecr_china_region_host(self) -> None:
        """ECR in the China regions lives under amazonaws.com.cn."""
        body = mutate("ecr-image-action", {"region": "cn-north-1"})
        (event,) = FORMATS["ecr"].parse(delivery(body))
        assert event.registry == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"

    def test_gar_tag_delete(self) -> None:
        """A GAR DELETE naming only a tag is a delete of that tag."""
        data = {"action": "DELETE", "tag": "us-docker.pkg.dev/p/r/app:v1"}
        message = {
            "message": {
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "messageId": "m-1",
            },
            "subscription": "projects/p/subscriptions/s",
        }
        (event,) = FORMATS["gar"].parse(delivery(json.dumps(message).encode()))
        assert (event.kind, event.repository, event.tag, event.digest) == (
            EventKind.DELETE,
            "p/r/app",
            "v1",
            None,
        )

    def test_azure_ignores_ping_and_quarantine(self) -> None:
        """Azure's ping and quarantine actions yield no events."""
        for action in ("ping", "quarantine", "chart_push"):
            body = mutate("azure-acr-push", {"action": action})
            assert FORMATS["azure"].parse(delivery(body)) == []

    def test_dockerhub_official_image(self) -> None:
        """A Docker Hub repository without a namespace is an official 'library/' image."""
        body = mutate("dockerhub-push", {"repository.repo_name": "busybox"})
        (event,) = FORMATS["dockerhub"].parse(delivery(body))
        assert event.repository == "library/busybox"
