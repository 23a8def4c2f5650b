"""DistributionRegistry against a real docker-registry 2.8.2 on loopback."""

from __future__ import annotations

import httpx
import pytest

from conveyor.core import errors
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry import inspection, manifests
from conveyor.registry.endpoints import RegistryEndpoint
from tests.support.registry import skopeo_digest


def ref(registry, text: str) -> ImageRef:
    return ImageRef.parse(f"{registry.host}/{text}")


class TestResolve:
    async def test_tag_resolves_to_the_digest_skopeo_sees(
        self, anonymous_registry, images, client_for
    ):
        """A tag resolves to the digest of the manifest bytes the registry serves."""
        client = client_for(anonymous_registry)
        for name, expected in (("single", images.single), ("multi", images.multi)):
            pinned = await client.resolve(ref(anonymous_registry, f"src/{name}:v1"))
            assert str(pinned.digest) == expected
            assert expected == skopeo_digest(f"{anonymous_registry.host}/src/{name}:v1")

    async def test_digest_reference_is_verified_and_kept(
        self, anonymous_registry, images, client_for
    ):
        """Resolving by digest returns the same digest with the tag unset."""
        client = client_for(anonymous_registry)
        pinned = await client.resolve(ref(anonymous_registry, f"src/multi@{images.amd64}"))
        assert pinned == PinnedImage(
            repository=Repository(anonymous_registry.host, "src/multi"),
            digest=Digest.parse(images.amd64),
        )

    async def test_unknown_tag_is_manifest_unknown(self, anonymous_registry, images, client_for):
        """An absent tag raises ManifestUnknown naming the reference; it is terminal."""
        client = client_for(anonymous_registry)
        with pytest.raises(errors.ManifestUnknown) as caught:
            await client.resolve(ref(anonymous_registry, "src/single:nope"))
        assert f"{anonymous_registry.host}/src/single:nope" in str(caught.value)
        assert "manifest unknown" in str(caught.value)
        assert caught.value.retryable is False

    async def test_unknown_repository(self, anonymous_registry, client_for):
        """A repository that does not exist is reported as unknown (repository or manifest)."""
        client = client_for(anonymous_registry)
        with pytest.raises((errors.RepositoryUnknown, errors.ManifestUnknown)) as caught:
            await client.resolve(ref(anonymous_registry, "no/such-repo:v1"))
        assert "unknown" in str(caught.value)

    async def test_missing_accept_gives_false_404_on_2_8_2(
        self, anonymous_registry, images, client_for
    ):
        """Registry 2.8.2 hides an OCI index without Accept; the client's full Accept finds it."""
        url = f"{anonymous_registry.url}/v2/src/multi/manifests/v1"
        bare = httpx.get(url)
        assert bare.status_code == 404
        manifest = await client_for(anonymous_registry).fetch_manifest(
            Repository(anonymous_registry.host, "src/multi"), "v1"
        )
        assert manifest.media_type == manifests.OCI_INDEX
        assert {str(c.digest) for c in manifest.manifests} == {images.amd64, images.arm64}


class TestPort:
    async def test_registry_protocol_copy_within_registry(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """DistributionRegistry.copy (the core port) copies by digest within the registry."""
        from conveyor.core.ports import Registry

        client: Registry = client_for(anonymous_registry)
        source = PinnedImage(
            repository=Repository(anonymous_registry.host, "src/multi"),
            digest=Digest.parse(images.multi),
        )
        copied = await client.copy(
            source, to=Repository(anonymous_registry.host, repo_name), tag="v9"
        )
        assert copied.digest == source.digest and copied.tag == "v9"
        assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:v9") == images.multi
        assert "v9" in await client.list_tags(copied.repository)


class TestTags:
    async def test_lists_every_tag_once(self, anonymous_registry, images, client_for, repo_name):
        """Tags of a repository are listed de-duplicated, including retags."""
        client = client_for(anonymous_registry)
        source = PinnedImage(
            repository=Repository(anonymous_registry.host, "src/single"),
            digest=Digest.parse(images.single),
        )
        for tag in ("b-1", "a-2", "c-3"):
            await client.retag(source, tag)
        found = await client.list_tags(source.repository)
        assert sorted(found) == sorted({"v1", "b-1", "a-2", "c-3"})
        assert len(found) == len(set(found))

    async def test_2_8_2_ignoring_page_size_is_tolerated(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """2.8.2 ignores n= and sends no Link: a repeated full page ends the listing."""
        client = client_for(anonymous_registry)
        source = PinnedImage(
            repository=Repository(anonymous_registry.host, "src/single"),
            digest=Digest.parse(images.single),
        )
        target = Repository(anonymous_registry.host, repo_name)
        await client.copy(source, to=target, tag="t1")
        for tag in ("t2", "t3", "t4", "t5"):
            await client.retag(PinnedImage(repository=target, digest=source.digest), tag)
        raw = httpx.get(f"{anonymous_registry.url}/v2/{repo_name}/tags/list?n=2").json()
        assert len(raw["tags"]) == 5  # the quirk: n is ignored
        found = await client.list_tags(target, page_size=2)
        assert sorted(found) == ["t1", "t2", "t3", "t4", "t5"]

    async def test_retag_keeps_the_digest(self, anonymous_registry, images, client_for):
        """A retag points the new tag at exactly the same digest."""
        client = client_for(anonymous_registry)
        source = PinnedImage(
            repository=Repository(anonymous_registry.host, "src/multi"),
            digest=Digest.parse(images.multi),
        )
        retagged = await client.retag(source, "promoted")
        assert retagged.digest == source.digest
        assert skopeo_digest(f"{anonymous_registry.host}/src/multi:promoted") == images.multi


class TestInspect:
    async def test_single_image(self, anonymous_registry, images, client_for):
        """Inspect reads labels, created time, platform and size from the image config."""
        info = await inspection.inspect_image(
            client_for(anonymous_registry), ref(anonymous_registry, "src/single:v1")
        )
        assert str(info.image.digest) == images.single
        assert info.media_type == manifests.OCI_MANIFEST
        (only,) = info.platforms
        assert str(only.platform) == "linux/amd64"
        assert only.labels["team"] == "conveyor"
        assert only.created and only.created.startswith("20")
        assert only.layers == 1
        assert info.size > only.size > 0

    async def test_index_lists_each_platform(self, anonymous_registry, images, client_for):
        """Inspecting an index shows one entry per platform with its own digest."""
        info = await inspection.inspect_image(
            client_for(anonymous_registry), ref(anonymous_registry, "src/multi:v1")
        )
        assert info.media_type == manifests.OCI_INDEX
        assert {(str(p.platform), str(p.digest)) for p in info.platforms} == {
            ("linux/amd64", images.amd64),
            ("linux/arm64", images.arm64),
        }


class TestErrors:
    async def test_connection_refused_is_retryable_and_not_httpx(self, client_for):
        """An unreachable registry raises RegistryUnavailable (retryable), chained, never httpx."""
        from tests.support.registry import RegistryProcess, free_port

        port = free_port()
        dead = RegistryProcess(
            host=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}", directory=None, process=None
        )
        with pytest.raises(errors.RegistryUnavailable) as caught:
            await client_for(dead).resolve(ImageRef.parse(f"127.0.0.1:{port}/a/b:c"))
        assert caught.value.retryable is True
        assert f"127.0.0.1:{port} unreachable" in str(caught.value)
        assert isinstance(caught.value.__cause__, httpx.HTTPError)

    def test_registry_errors_are_not_httpx_errors(self):
        """None of Conveyor's registry errors subclasses an httpx exception."""
        classes = [
            errors.RegistryError,
            errors.RegistryUnauthorized,
            errors.RegistryForbidden,
            errors.RepositoryUnknown,
            errors.ManifestUnknown,
            errors.DigestMismatch,
            errors.UnsupportedMediaType,
            errors.RegistryUnavailable,
            errors.RegistryRequestRejected,
            errors.CredentialsUnavailable,
        ]
        for cls in classes:
            assert not issubclass(cls, httpx.HTTPError)
            assert issubclass(cls, errors.ConveyorError)
        terminal = {cls: cls.retryable for cls in classes}
        assert terminal[errors.RegistryUnavailable] is True
        assert not any(
            v
            for k, v in terminal.items()
            if k not in (errors.RegistryUnavailable, errors.RegistryError)
        )

    async def test_unreadable_ca_file(self, tmp_path):
        """A ca_file that cannot be read is reported with its path."""
        from conveyor.registry.client import DistributionRegistry

        endpoint = RegistryEndpoint(
            host="r.example", url="https://r.example", ca_file=str(tmp_path / "missing.pem")
        )
        with pytest.raises(errors.InvalidInput) as caught:
            DistributionRegistry(endpoint)
        assert "tls.ca_file" in str(caught.value) and "missing.pem" in str(caught.value)

    def test_plain_http_needs_insecure(self):
        """A plain-http URL is refused unless the registry is marked insecure."""
        with pytest.raises(errors.InvalidInput) as caught:
            RegistryEndpoint(host="127.0.0.1:5000", url="http://127.0.0.1:5000")
        assert "insecure" in str(caught.value)
