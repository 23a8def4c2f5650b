"""Authentication against real registries: htpasswd Basic and the token protocol.

The token registry is docker-registry 2.8.2 with ``auth: token``; its token
service (``tests.support.registry.TokenIssuer``) serves GET and the OAuth2
POST flow, and refuses one of them where a test says so.
"""

from __future__ import annotations

import base64
import json

import pytest

from conveyor import wiring
from conveyor.config import loader
from conveyor.core import errors
from conveyor.core.credentials import Credentials, Secret
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry.copy import copy_image
from conveyor.registry.dockerconfig import load_credentials
from tests.support.registry import skopeo_digest

from .conftest import BASIC_PASSWORD, BASIC_USER, TOKEN_PASSWORD, TOKEN_USER


@pytest.fixture(scope="module")
def token_image(token_registry, images) -> str:
    """The layered image pushed to the token registry as team/app:v1 and public/app:v1."""
    creds = f"{TOKEN_USER}:{TOKEN_PASSWORD}"
    images.layout.push("layers", f"{token_registry.host}/public/app:v1", creds=creds)
    return images.layout.push("layers", f"{token_registry.host}/team/app:v1", creds=creds)


class TestBasic:
    async def test_right_password_resolves(self, basic_registry, basic_image, client_for):
        """With the htpasswd user's password the tag resolves."""
        client = client_for(basic_registry, username=BASIC_USER, password=BASIC_PASSWORD)
        pinned = await client.resolve(ImageRef.parse(f"{basic_registry.host}/team/app:v1"))
        assert str(pinned.digest) == basic_image

    async def test_wrong_password_names_the_registry(self, basic_registry, basic_image, client_for):
        """A wrong password gives RegistryUnauthorized naming the registry, without the password."""
        client = client_for(basic_registry, username=BASIC_USER, password="not-the-Pa55")
        with pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{basic_registry.host}/team/app:v1"))
        message = str(caught.value)
        assert f"the credentials for {basic_registry.host} were rejected" in message
        assert "not-the-Pa55" not in message and "not-the-Pa55" not in repr(client.endpoint)
        assert caught.value.retryable is False

    async def test_no_credentials_says_so(self, basic_registry, basic_image, client_for):
        """Without credentials the error says the registry needs some."""
        with pytest.raises(errors.RegistryUnauthorized) as caught:
            await client_for(basic_registry).resolve(
                ImageRef.parse(f"{basic_registry.host}/team/app:v1")
            )
        assert f"{basic_registry.host} requires credentials" in str(caught.value)


class TestToken:
    async def test_token_is_fetched_once_and_cached(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """The bearer token is fetched for the challenge's scope and reused until it expires."""
        client = _logged_in(client_for, token_registry, ca)
        ref = ImageRef.parse(f"{token_registry.host}/team/app:v1")
        for _ in range(3):
            pinned = await client.resolve(ref)
        assert str(pinned.digest) == token_image
        assert client.auth.token_requests == [frozenset({"repository:team/app:pull"})]

    async def test_wrong_password_names_token_service(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """The token service refusing the password is RegistryUnauthorized naming the registry."""
        client = client_for(
            token_registry, username=TOKEN_USER, password="wrong", ca_file=ca.ca_file
        )
        with pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert str(caught.value) == (
            f"the token service {token_issuer.url} of {token_registry.host} rejected the "
            f"credentials (HTTP 401, GET); check the username and password for "
            f"{token_registry.host}"
        )

    async def test_a_failing_token_service_is_retried(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """A 503 from the token service is not a verdict on the password: the request is retried."""
        client = _logged_in(client_for, token_registry, ca)
        start = len(token_issuer.requests)
        token_issuer.failing = [503]
        pinned = await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert str(pinned.digest) == token_image
        assert [r.status for r in token_issuer.requests[start:]] == [503, 200]

    async def test_a_token_service_still_failing_is_unavailable_not_unauthorized(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """Once retries run out: RegistryUnavailable (retryable), naming the service and status."""
        client = _logged_in(client_for, token_registry, ca)
        token_issuer.failing = [503, 502, 503, 503]
        with pytest.raises(errors.RegistryUnavailable) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert caught.value.retryable
        assert str(caught.value) == (
            f"the token service {token_issuer.url} of {token_registry.host} is unavailable "
            "(HTTP 502); try again later"
        )
        token_issuer.failing = []

    async def test_anonymous_token_for_public_pull(
        self, token_registry, token_image, ca, client_for
    ):
        """Without credentials an anonymous token still pulls what the policy makes public."""
        client = client_for(token_registry, ca_file=ca.ca_file)
        pinned = await client.resolve(ImageRef.parse(f"{token_registry.host}/public/app:v1"))
        assert str(pinned.digest) == token_image
        with pytest.raises(errors.RegistryError) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert isinstance(caught.value, errors.RegistryUnauthorized | errors.RegistryForbidden)

    async def test_push_beyond_granted_scope_is_forbidden(
        self, token_registry, token_image, ca, client_for
    ):
        """A push the token service does not grant is RegistryForbidden (insufficient scope)."""
        client = _logged_in(client_for, token_registry, ca)
        source = _team_app(token_registry, token_image)
        with pytest.raises(errors.RegistryForbidden) as caught:
            await copy_image(
                client,
                source,
                destination=client,
                to=Repository(token_registry.host, "readonly/app"),
            )
        assert "insufficient scope" in str(caught.value)

    async def test_mount_widens_scope_to_the_source(
        self, token_registry, token_issuer, token_image, ca, client_for, repo_name
    ):
        """A cross-repository mount asks one token for push on the target and pull on the source."""
        client = _logged_in(client_for, token_registry, ca)
        source = _team_app(token_registry, token_image)
        result = await copy_image(
            client,
            source,
            destination=client,
            to=Repository(token_registry.host, repo_name),
            tag="v1",
        )
        assert (result.blobs_mounted, result.blobs_copied) == (5, 0)
        assert (
            frozenset({f"repository:{repo_name}:pull,push", "repository:team/app:pull"})
            in client.auth.token_requests
        )
        assert (
            skopeo_digest(
                f"{token_registry.host}/{repo_name}:v1", creds=f"{TOKEN_USER}:{TOKEN_PASSWORD}"
            )
            == token_image
        )

    async def test_tls_is_verified_by_default(self, token_registry, token_image, client_for):
        """Without the registry's CA the TLS handshake fails with an actionable error."""
        client = client_for(token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD)
        with pytest.raises(errors.RegistryUnavailable) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert "TLS" in str(caught.value) and "ca_file" in str(caught.value)


def _logged_in(client_for, token_registry, ca):
    """A client of the token registry with the test user's password, trusting the test CA."""
    return client_for(
        token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=ca.ca_file
    )


def _team_app(token_registry, token_image: str) -> PinnedImage:
    """The pushed test image in team/app, by digest."""
    return PinnedImage(
        repository=Repository(token_registry.host, "team/app"), digest=Digest.parse(token_image)
    )


def _since(issuer, start: int) -> list:
    return issuer.requests[start:]


def _docker_config(tmp_path, host: str, entry: dict) -> Credentials:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {host: entry}}))
    found = load_credentials(host, path=path)
    assert found is not None
    return found


class TestOAuth2:
    """The OAuth2 POST flow (distribution docs/spec/auth/oauth.md) against the real registry."""

    @pytest.mark.parametrize("refused", [404, 405])
    async def test_post_only_token_service_password_then_refresh_token(
        self, token_registry, token_issuer, token_image, ca, client_for, refused
    ):
        """GET refused: one password grant (offline), then refresh-token grants, no password."""
        client = _logged_in(client_for, token_registry, ca)
        start = len(token_issuer.requests)
        with token_issuer.refusing(get=refused):
            for name in ("team/app", "public/app", "team/app"):
                pinned = await client.resolve(ImageRef.parse(f"{token_registry.host}/{name}:v1"))
                assert str(pinned.digest) == token_image
        seen = _since(token_issuer, start)
        assert [(r.grant, r.status) for r in seen] == [
            ("get", refused),
            ("password", 200),
            ("refresh_token", 200),
        ]
        password, refresh = seen[1].form, seen[2].form
        assert password == {
            "client_id": "conveyor",
            "service": "conveyor-registry",
            "scope": "repository:team/app:pull",
            "grant_type": "password",
            "username": TOKEN_USER,
            "password": "***",
            "access_type": "offline",
        }
        assert refresh["grant_type"] == "refresh_token" and "password" not in refresh
        assert refresh["scope"] == "repository:public/app:pull"

    async def test_push_with_two_scopes_through_post_only_service(
        self, token_registry, token_issuer, token_image, ca, client_for, repo_name
    ):
        """A mount asks one POST for both scopes, space-separated; the copy lands by digest."""
        client = _logged_in(client_for, token_registry, ca)
        source = _team_app(token_registry, token_image)
        start = len(token_issuer.requests)
        with token_issuer.refusing(get=405):
            result = await copy_image(
                client, source, destination=client, to=Repository(token_registry.host, repo_name)
            )
        assert result.blobs_mounted == 5
        scopes = {r.form.get("scope") for r in _since(token_issuer, start) if r.grant != "get"}
        assert f"repository:{repo_name}:pull,push repository:team/app:pull" in scopes
        reference = f"{token_registry.host}/{repo_name}@{token_image}"
        assert skopeo_digest(reference, creds=f"{TOKEN_USER}:{TOKEN_PASSWORD}") == token_image

    async def test_wrong_password_by_post_names_realm_and_status(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """A refused password grant says which registry, which realm, what status; no password."""
        client = client_for(
            token_registry, username=TOKEN_USER, password="Wrong-Pa55", ca_file=ca.ca_file
        )
        with token_issuer.refusing(get=404), pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert str(caught.value) == (
            f"the token service {token_issuer.url} of {token_registry.host} rejected the "
            f"credentials (HTTP 401, OAuth2 POST); check the username and password for "
            f"{token_registry.host}"
        )

    async def test_anonymous_against_post_only_service_says_credentials_are_needed(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """Without credentials a POST-only token service cannot be used; the error says why."""
        client = client_for(token_registry, ca_file=ca.ca_file)
        with token_issuer.refusing(get=405), pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/public/app:v1"))
        message = str(caught.value)
        assert f"the token service {token_issuer.url} of {token_registry.host}" in message
        assert "(GET) with HTTP 405: it takes only the OAuth2 POST flow" in message

    async def test_identity_token_from_docker_config(
        self, token_registry, token_issuer, token_image, ca, client_for, tmp_path
    ):
        """docker's `identitytoken` is the refresh token: refresh grants only, never a GET."""
        identity = token_issuer.issue_refresh_token(TOKEN_USER)
        credentials = _docker_config(
            tmp_path,
            token_registry.host,
            {
                "auth": base64.b64encode(f"{TOKEN_USER}:".encode()).decode(),
                "identitytoken": identity,
            },
        )
        assert identity not in repr(credentials)
        client = client_for(token_registry, credentials=credentials, ca_file=ca.ca_file)
        start = len(token_issuer.requests)
        for name in ("team/app", "public/app"):
            pinned = await client.resolve(ImageRef.parse(f"{token_registry.host}/{name}:v1"))
            assert str(pinned.digest) == token_image
        seen = _since(token_issuer, start)
        assert [(r.grant, r.user, r.status) for r in seen] == [
            ("refresh_token", TOKEN_USER, 200),
            ("refresh_token", TOKEN_USER, 200),
        ]

    async def test_revoked_identity_token_is_actionable(
        self, token_registry, token_issuer, token_image, ca, client_for, tmp_path
    ):
        """An identity token the service no longer knows: log in again, says the error."""
        revoked = "revoked-identity-Token-123"
        credentials = _docker_config(tmp_path, token_registry.host, {"identitytoken": revoked})
        client = client_for(token_registry, credentials=credentials, ca_file=ca.ca_file)
        with pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        message = str(caught.value)
        assert message == (
            f"the token service {token_issuer.url} of {token_registry.host} rejected the "
            f"identity token (refresh token) for {token_registry.host} (HTTP 401); it may have "
            f"expired or been revoked: log in again (docker login {token_registry.host})"
        )
        assert revoked not in message and revoked not in repr(client.auth)

    async def test_identity_token_with_a_service_without_oauth2(
        self, token_registry, token_issuer, token_image, ca, client_for, tmp_path
    ):
        """A token service answering POST with 404 cannot take an identity token; said so."""
        identity = token_issuer.issue_refresh_token(TOKEN_USER)
        credentials = _docker_config(tmp_path, token_registry.host, {"identitytoken": identity})
        client = client_for(token_registry, credentials=credentials, ca_file=ca.ca_file)
        with token_issuer.refusing(post=404), pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert "does not take the OAuth2 POST flow (HTTP 404)" in str(caught.value)
        assert identity not in str(caught.value)

    async def test_rejected_refresh_token_falls_back_to_the_password(
        self, token_registry, token_issuer, token_image, ca, client_for
    ):
        """A refresh token the service stopped honouring is dropped; the password gets a new one."""
        client = client_for(
            token_registry,
            credentials=Credentials(
                username=TOKEN_USER,
                password=Secret(TOKEN_PASSWORD),
                identity_token=Secret("stale-refresh-Token"),
            ),
            ca_file=ca.ca_file,
        )
        start = len(token_issuer.requests)
        for name in ("team/app", "public/app"):
            pinned = await client.resolve(ImageRef.parse(f"{token_registry.host}/{name}:v1"))
            assert str(pinned.digest) == token_image
        assert [(r.grant, r.status) for r in _since(token_issuer, start)] == [
            ("refresh_token", 401),
            ("password", 200),
            ("refresh_token", 200),
        ]

    async def test_configured_oauth2_posts_first_and_falls_back_to_get_on_404(
        self, token_registry, token_issuer, token_image, ca, tmp_path
    ):
        """`token_flow: oauth2` in the config: POST first; a POST 404 falls back to GET."""
        config = tmp_path / "conveyor.yaml"
        config.write_text(
            f"""\
registries:
  main:
    url: {token_registry.url}
    token_flow: oauth2
    credentials: {{username_env: REG_USER, password_env: REG_PASSWORD}}
    tls: {{ca_file: {ca.ca_file}}}
"""
        )
        definitions = loader.load(config)
        environ = {"REG_USER": TOKEN_USER, "REG_PASSWORD": TOKEN_PASSWORD}
        ref = ImageRef.parse(f"{token_registry.host}/team/app:v1")
        for refuse_post, expected in (
            (None, [("password", 200)]),
            (404, [("password", 404), ("get", 200)]),
        ):
            registries = wiring.ConfiguredRegistries(definitions.registries, environ)
            start = len(token_issuer.requests)
            with token_issuer.refusing(post=refuse_post):
                pinned = await registries.client("main").resolve(ref)
            assert str(pinned.digest) == token_image
            assert [(r.grant, r.status) for r in _since(token_issuer, start)] == expected

    @pytest.mark.parametrize("setting", ["true", "path"])
    async def test_configured_docker_config_carries_the_identity_token(
        self, token_registry, token_issuer, token_image, ca, tmp_path, setting
    ):
        """`credentials: {docker_config: ...}` in the config reads config.json, identity token too."""
        docker_dir = tmp_path / "docker"
        docker_dir.mkdir()
        identity = token_issuer.issue_refresh_token(TOKEN_USER)
        (docker_dir / "config.json").write_text(
            json.dumps({"auths": {token_registry.host: {"identitytoken": identity}}})
        )
        value = "true" if setting == "true" else str(docker_dir / "config.json")
        config = tmp_path / "conveyor.yaml"
        config.write_text(
            f"""\
registries:
  main:
    url: {token_registry.url}
    credentials: {{docker_config: {value}}}
    tls: {{ca_file: {ca.ca_file}}}
"""
        )
        definitions = loader.load(config)
        registries = wiring.ConfiguredRegistries(
            definitions.registries, {"DOCKER_CONFIG": str(docker_dir)} if setting == "true" else {}
        )
        start = len(token_issuer.requests)
        pinned = await registries.client("main").resolve(
            ImageRef.parse(f"{token_registry.host}/team/app:v1")
        )
        assert str(pinned.digest) == token_image
        assert [(r.grant, r.user) for r in _since(token_issuer, start)] == [
            ("refresh_token", TOKEN_USER)
        ]
