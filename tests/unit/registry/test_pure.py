"""Pure parts of the registry client: parsing challenges, scopes, manifests, Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from conveyor.core import errors
from conveyor.core.credentials import Credentials, Secret
from conveyor.core.images import Digest
from conveyor.registry import inspection, manifests
from conveyor.registry.auth import Challenge, scopes_for
from conveyor.registry.client import RetryPolicy, parse_retry_after
from conveyor.registry.endpoints import RegistryEndpoint


class TestChallenge:
    @pytest.mark.parametrize(
        ("header", "scheme", "params"),
        [
            pytest.param(
                'Bearer realm="https://auth.example/token",service="reg",'
                'scope="repository:a/b:pull,push repository:c:pull"',
                "bearer",
                {
                    "realm": "https://auth.example/token",
                    "service": "reg",
                    "scope": "repository:a/b:pull,push repository:c:pull",
                },
                id="bearer-two-scopes",
            ),
            pytest.param(
                'Basic realm="conveyor-test"', "basic", {"realm": "conveyor-test"}, id="basic"
            ),
            pytest.param(
                "Bearer realm=https://x/t, service=s",
                "bearer",
                {"realm": "https://x/t", "service": "s"},
                id="unquoted",
            ),
        ],
    )
    def test_parse(self, header, scheme, params):
        """WWW-Authenticate parameters are read quoted or not."""
        assert Challenge.parse(header) == Challenge(scheme, params)


class TestScopes:
    @pytest.mark.parametrize(
        ("method", "url", "expected"),
        [
            pytest.param("GET", "https://r/v2/", set(), id="version-check"),
            pytest.param(
                "HEAD",
                "https://r/v2/team/app/manifests/v1",
                {"repository:team/app:pull"},
                id="pull",
            ),
            pytest.param(
                "PUT", "https://r/v2/a/manifests/v1", {"repository:a:pull,push"}, id="push"
            ),
            pytest.param(
                "DELETE", "https://r/v2/a/manifests/sha256:x", {"repository:a:delete"}, id="delete"
            ),
            pytest.param(
                "POST",
                "https://r/v2/team/prod/blobs/uploads/?mount=sha256:x&from=team/app",
                {"repository:team/prod:pull,push", "repository:team/app:pull"},
                id="mount-widens",
            ),
        ],
    )
    def test_scopes_for(self, method, url, expected):
        """Each request asks for the scopes it needs; a mount adds pull on the source."""
        assert scopes_for(httpx.Request(method, url)) == frozenset(expected)


class TestManifests:
    def test_schema1_is_refused(self):
        """Docker schema1 bodies are refused with UnsupportedMediaType."""
        raw = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
        with pytest.raises(errors.UnsupportedMediaType) as caught:
            manifests.parse_manifest(
                raw, content_type=manifests.SCHEMA1[1], digest=Digest.of(raw), where="a:v1"
            )
        assert "a:v1: Docker schema1 manifests are not supported" in str(caught.value)

    def test_unknown_media_type(self):
        """An unknown manifest type is refused, naming the accepted ones."""
        raw = json.dumps({"schemaVersion": 2, "mediaType": "application/x-weird"}).encode()
        with pytest.raises(errors.UnsupportedMediaType) as caught:
            manifests.parse_manifest(raw, content_type="", digest=Digest.of(raw), where="a:v1")
        assert "'application/x-weird'" in str(caught.value)

    def test_index_children_keep_platforms(self):
        """Index children keep their platform and digest."""
        child = "sha256:" + "a" * 64
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifests.OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": manifests.OCI_MANIFEST,
                        "digest": child,
                        "size": 10,
                        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                    }
                ],
            }
        ).encode()
        parsed = manifests.parse_manifest(raw, content_type="", digest=Digest.of(raw), where="x")
        assert parsed.is_index
        assert [(str(c.platform), str(c.digest)) for c in parsed.manifests] == [
            ("linux/arm64/v8", child)
        ]

    def test_config_labels_created_platform(self):
        """Image config gives created time, labels and platform."""
        raw = json.dumps(
            {
                "created": "2026-11-28T10:00:00Z",
                "os": "linux",
                "architecture": "amd64",
                "config": {"Labels": {"a": "b"}},
            }
        ).encode()
        config = manifests.parse_config(raw)
        assert (config.created, dict(config.labels), str(config.platform)) == (
            "2026-11-28T10:00:00Z",
            {"a": "b"},
            "linux/amd64",
        )

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(
                "2024-05-01T10:30:00", datetime(2024, 5, 1, 10, 30, tzinfo=UTC), id="none"
            ),
            pytest.param("2024-05-01T10:30:00Z", datetime(2024, 5, 1, 10, 30, tzinfo=UTC), id="Z"),
            pytest.param(
                "2024-05-01T12:30:00+02:00", datetime(2024, 5, 1, 10, 30, tzinfo=UTC), id="offset"
            ),
        ],
    )
    def test_created_without_zone_is_utc(self, text, expected):
        """`created` without a zone is read as UTC: every parsed time is aware and comparable."""
        parsed = inspection.parse_created(text)
        assert parsed is not None and parsed.utcoffset() is not None
        assert parsed == expected
        assert max(parsed, inspection.parse_created("2024-05-01T10:00:00Z")) == parsed


class TestRetry:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("7", 7.0, id="seconds"),
            pytest.param("Thu, 01 Jan 1970 00:01:40 GMT", 40.0, id="http-date"),
            pytest.param("soon", None, id="garbage"),
            pytest.param(None, None, id="absent"),
        ],
    )
    def test_parse_retry_after(self, value, expected):
        """Retry-After is read as delta-seconds or an HTTP date."""
        assert parse_retry_after(value, now=60.0) == expected

    def test_delay_prefers_retry_after_and_caps(self):
        """Backoff doubles per attempt; Retry-After wins; both are capped."""
        policy = RetryPolicy(base_delay=0.5, max_delay=30)
        assert [policy.delay(i, None) for i in range(4)] == [0.5, 1.0, 2.0, 4.0]
        assert policy.delay(0, 3) == 3
        assert policy.delay(0, 3600) == 30


class TestEndpoint:
    def test_from_config_uses_public_host_and_internal_url(self):
        """Image refs carry the public host; requests may go to the internal URL."""
        endpoint = RegistryEndpoint.from_config(
            url="https://registry.example.com",
            internal_url="https://registry.internal:5000",
            use_internal=True,
        )
        assert (endpoint.host, endpoint.url) == (
            "registry.example.com",
            "https://registry.internal:5000",
        )

    def test_repr_hides_the_password(self):
        """The endpoint's repr shows the user, never the password."""
        endpoint = RegistryEndpoint.for_host(
            "r.example", credentials=Credentials(username="u", password=Secret("hunter2-Secret"))
        )
        assert "hunter2-Secret" not in repr(endpoint) and "'u'" in repr(endpoint)
        assert endpoint.url == "https://r.example"
        assert RegistryEndpoint.for_host("docker.io").url == "https://registry-1.docker.io"

    def test_repr_hides_the_identity_token(self):
        """An identity token (OAuth2 refresh token) is masked like a password."""
        credentials = Credentials(
            username="", password=Secret(""), identity_token=Secret("identity-Token-5")
        )
        endpoint = RegistryEndpoint.for_host("r.example", credentials=credentials)
        assert "identity-Token-5" not in repr(endpoint) + repr(credentials)

    def test_unknown_token_flow_is_refused(self):
        """token_flow is auto or oauth2; anything else is InvalidInput naming the registry."""
        with pytest.raises(errors.InvalidInput) as caught:
            RegistryEndpoint(host="r.example", url="https://r.example", token_flow="post")  # type: ignore[arg-type]
        assert str(caught.value) == (
            "registry r.example: token_flow 'post' is not one of auto, oauth2"
        )
