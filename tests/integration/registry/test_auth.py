"""Authentication against real registries: htpasswd Basic and the token protocol."""

from __future__ import annotations

import pytest

from conveyor.core import errors
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry.copy import copy_image
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
        client = client_for(
            token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=ca.ca_file
        )
        ref = ImageRef.parse(f"{token_registry.host}/team/app:v1")
        for _ in range(3):
            pinned = await client.resolve(ref)
        assert str(pinned.digest) == token_image
        assert client.auth.token_requests == [frozenset({"repository:team/app:pull"})]

    async def test_wrong_password_names_token_service(
        self, token_registry, token_image, ca, client_for
    ):
        """The token service refusing the password is RegistryUnauthorized naming the registry."""
        client = client_for(
            token_registry, username=TOKEN_USER, password="wrong", ca_file=ca.ca_file
        )
        with pytest.raises(errors.RegistryUnauthorized) as caught:
            await client.resolve(ImageRef.parse(f"{token_registry.host}/team/app:v1"))
        assert (
            "rejected the credentials (401); check the username and password for "
            f"{token_registry.host}" in str(caught.value)
        )

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
        client = client_for(
            token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=ca.ca_file
        )
        source = PinnedImage(
            repository=Repository(token_registry.host, "team/app"), digest=Digest.parse(token_image)
        )
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
        client = client_for(
            token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=ca.ca_file
        )
        source = PinnedImage(
            repository=Repository(token_registry.host, "team/app"), digest=Digest.parse(token_image)
        )
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
