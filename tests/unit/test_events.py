"""Registry events: resolution, dedupe keys, referrer tags, trigger matching and headers."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

import pytest

from conveyor.core.events import (
    EventKind,
    Headers,
    InboundDelivery,
    RegistryEvent,
    ScanSummary,
    dedupe_key,
    is_referrer_or_signature_tag,
    matches_trigger,
    needs_resolution,
)
from conveyor.core.images import Digest

HEX = "ee57179a2e86216b08bee6bc4e60a380c4202d19da93c7f59d3788d00424f4d1"
DIGEST = Digest("sha256", HEX)
PUSH = RegistryEvent(
    kind=EventKind.PUSH,
    registry="127.0.0.1:5000",
    repository="myteam/myapp",
    tag="myapp-V1.2.0",
    digest=DIGEST,
    delivery_id="a1",
    occurred_at=datetime(2026, 11, 28, 10, tzinfo=UTC),
    sender="distribution",
)


def match(event: RegistryEvent = PUSH, **trigger: object) -> tuple[bool, str]:
    options: dict[str, object] = {
        "repository": "myteam/myapp",
        "events": ["push"],
        "tag_regex": None,
    }
    options.update(trigger)
    return matches_trigger(event, **options)  # type: ignore[arg-type]


class TestNeedsResolution:
    @pytest.mark.parametrize(
        ("kind", "tag", "digest", "expected"),
        [
            pytest.param(EventKind.PUSH, "v1", None, True, id="push-without-digest"),
            pytest.param(EventKind.PUSH, None, DIGEST, False, id="push-by-digest"),
            pytest.param(EventKind.PUSH, "v1", DIGEST, False, id="push-complete"),
            pytest.param(EventKind.SCAN_COMPLETED, None, DIGEST, True, id="scan-without-tag"),
            pytest.param(EventKind.SCAN_FAILED, "v1", DIGEST, False, id="scan-complete"),
            pytest.param(EventKind.DELETE, "v1", None, False, id="delete-of-tag"),
            pytest.param(EventKind.DELETE, None, DIGEST, False, id="delete-of-digest"),
        ],
    )
    def test_rule(
        self, kind: EventKind, tag: str | None, digest: Digest | None, expected: bool
    ) -> None:
        """Pushes and scans missing a digest, and scans missing a tag, are resolved first."""
        assert needs_resolution(kind, tag=tag, digest=digest) is expected


KEY_PARTS: dict[str, str | None] = {
    "kind": "push",
    "registry": "127.0.0.1:5000",
    "repository": "myteam/myapp",
    "digest": str(DIGEST),
    "tag": "myapp-V1.2.0",
}


class TestDedupeKey:
    def test_is_the_sha256_of_the_five_parts(self) -> None:
        """The key is the hex sha256 of kind, registry, repository, digest and tag joined by NUL.

        Stored rows carry this value, so it must not change between versions.
        """
        expected = hashlib.sha256(
            f"push\x00127.0.0.1:5000\x00myteam/myapp\x00{DIGEST}\x00myapp-V1.2.0".encode()
        ).hexdigest()
        assert dedupe_key(**KEY_PARTS) == expected  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"kind": "delete"}, id="kind"),
            pytest.param({"registry": "registry.example.com"}, id="registry"),
            pytest.param({"repository": "myteam/other"}, id="repository"),
            pytest.param({"digest": str(Digest.of(b"x"))}, id="digest"),
            pytest.param({"digest": None}, id="no-digest"),
            pytest.param({"tag": "myapp-V1.2.1"}, id="tag"),
            pytest.param({"tag": None}, id="no-tag"),
        ],
    )
    def test_differs_when_what_happened_differs(self, change: dict[str, str | None]) -> None:
        """Kind, registry, repository, digest and tag each change the key."""
        assert dedupe_key(**(KEY_PARTS | change)) != dedupe_key(**KEY_PARTS)  # type: ignore[arg-type]

    def test_events_are_hashable(self) -> None:
        """Events with scan summaries can be put in sets."""
        scan = ScanSummary(scanner="Trivy", status="Success", severities={"high": 1}, total=1)
        assert len({PUSH, dataclasses.replace(PUSH, scan=scan)}) == 2


class TestReferrerTags:
    @pytest.mark.parametrize(
        ("tag", "expected"),
        [
            (f"sha256-{HEX}", True),
            (f"sha256-{HEX}.sig", True),
            (f"sha256-{HEX}.att", True),
            (f"sha256-{HEX}.sbom", True),
            ("myapp-V1.2.0", False),
            ("sha256-abc", False),
            (f"sha256-{HEX.upper()}", False),
            ("signature", False),
        ],
    )
    def test_classification(self, tag: str, expected: bool) -> None:
        """Referrers fallback tags and cosign-style .sig/.att/.sbom tags are recognised."""
        assert is_referrer_or_signature_tag(tag) is expected


class TestMatchesTrigger:
    def test_matching_push(self) -> None:
        """A push of a matching tag to the source's repository matches, and says so."""
        assert match(tag_regex=r"^myapp-V") == (True, "push of myteam/myapp:myapp-V1.2.0 matches")

    @pytest.mark.parametrize(
        ("event", "trigger", "reason"),
        [
            pytest.param(
                dataclasses.replace(PUSH, tag="other-1.0"),
                {"tag_regex": r"^myapp-V"},
                "tag 'other-1.0' does not match '^myapp-V'",
                id="tag-filter",
            ),
            pytest.param(
                PUSH,
                {"events": ["scan_completed", "delete"]},
                "event kind 'push' is not one of the trigger's events (delete, scan_completed)",
                id="kind",
            ),
            pytest.param(
                PUSH,
                {"repository": "myteam/other"},
                "repository 'myteam/myapp' is not 'myteam/other'",
                id="repository",
            ),
            pytest.param(
                dataclasses.replace(PUSH, tag=f"sha256-{HEX}"),
                {},
                f"tag 'sha256-{HEX}' is a referrers, signature or attestation tag",
                id="referrers-tag",
            ),
            pytest.param(
                dataclasses.replace(PUSH, tag=f"sha256-{HEX}.sig"),
                {"tag_regex": ".*"},
                f"tag 'sha256-{HEX}.sig' is a referrers, signature or attestation tag",
                id="signature-tag-even-if-regex-matches",
            ),
            pytest.param(
                dataclasses.replace(PUSH, tag=None),
                {},
                "the event names no tag (untagged artifact, or tags not resolved yet)",
                id="untagged-push",
            ),
            pytest.param(
                PUSH,
                {"tag_regex": "(?=x)"},
                "the trigger's tag filter '(?=x)' is not a valid RE2 expression",
                id="invalid-regex",
            ),
        ],
    )
    def test_refusals_say_why(
        self, event: RegistryEvent, trigger: dict[str, object], reason: str
    ) -> None:
        """Each non-match carries a reason the delivery log can show."""
        assert match(event, **trigger) == (False, reason)

    def test_regex_is_unanchored_like_flux(self) -> None:
        """The tag filter searches, as Go's MatchString does; anchors make it strict."""
        assert match(tag_regex="V1")[0] is True
        assert match(tag_regex="^V1")[0] is False

    def test_delete_by_digest_matches_without_tag_filter(self) -> None:
        """A delete naming only a digest matches a delete trigger without a tag filter."""
        event = dataclasses.replace(PUSH, kind=EventKind.DELETE, tag=None)
        assert match(event, events=["delete"]) == (
            True,
            f"delete of myteam/myapp@sha256:{HEX} matches",
        )

    def test_scan_event_matches(self) -> None:
        """A completed scan matches a scan_completed trigger."""
        event = dataclasses.replace(PUSH, kind=EventKind.SCAN_COMPLETED)
        assert match(event, events=["scan_completed"])[0] is True


class TestHeaders:
    def test_lookup_is_case_insensitive(self) -> None:
        """Header names match whatever their case."""
        headers = Headers({"X-GitHub-Event": "package"})
        assert headers["x-github-event"] == headers.get("X-GITHUB-EVENT") == "package"

    def test_raw_asgi_pairs(self) -> None:
        """ASGI's latin-1 byte pairs are accepted, and repeated headers are joined."""
        headers = Headers([(b"accept", b"a"), (b"Accept", b"b"), (b"x-caf\xe9", b"\xe9")])
        assert dict(headers) == {"accept": "a, b", "x-caf\u00e9": "\u00e9"}

    def test_repr_hides_values(self) -> None:
        """Neither headers nor deliveries show credentials or bodies in their repr."""
        delivery = InboundDelivery(
            headers=Headers({"Authorization": "Bearer hunter2"}),
            body=b"secret body",
            received_at=datetime(2026, 11, 28, tzinfo=UTC),
        )
        assert "hunter2" not in repr(delivery)
        assert "secret body" not in repr(delivery)
