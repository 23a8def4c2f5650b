"""Copy by digest between repositories and registries; the digest must survive."""

from __future__ import annotations

import httpx
import pytest

from conveyor import wiring
from conveyor.config import loader
from conveyor.core import errors
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry.copy import copy_image
from tests.support.registry import QuietHandler, RegistryProcess, serve_http, skopeo_digest

from .conftest import TOKEN_PASSWORD, TOKEN_USER


def pinned(registry, name: str, digest: str) -> PinnedImage:
    return PinnedImage(repository=Repository(registry.host, name), digest=Digest.parse(digest))


class TestSameRegistry:
    async def test_single_image_is_mounted_not_copied(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """Within one registry every blob is mounted: no layer bytes pass through Conveyor."""
        client = client_for(anonymous_registry)
        source = pinned(anonymous_registry, "src/layers", images.layers)
        result = await copy_image(
            client,
            source,
            destination=client,
            to=Repository(anonymous_registry.host, repo_name),
            tag="v1",
        )
        assert result.blobs_mounted == 5  # config + 4 layers
        assert (result.blobs_copied, result.bytes_copied) == (0, 0)
        assert result.image.digest == source.digest
        assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:v1") == images.layers
        assert (
            skopeo_digest(f"{anonymous_registry.host}/{repo_name}@{images.layers}") == images.layers
        )

    async def test_index_with_every_child(self, anonymous_registry, images, client_for, repo_name):
        """A multi-platform index is copied with every child by digest, then the index."""
        client = client_for(anonymous_registry)
        source = pinned(anonymous_registry, "src/multi", images.multi)
        result = await copy_image(
            client,
            source,
            destination=client,
            to=Repository(anonymous_registry.host, repo_name),
            tag="v2",
        )
        assert result.manifests == 3
        assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:v2") == images.multi
        for child in (images.amd64, images.arm64):
            assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}@{child}") == child

    async def test_index_needs_all_platforms(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """Copying an index without all_platforms is refused, naming its platforms."""
        client = client_for(anonymous_registry)
        with pytest.raises(errors.InvalidInput) as caught:
            await copy_image(
                client,
                pinned(anonymous_registry, "src/multi", images.multi),
                destination=client,
                to=Repository(anonymous_registry.host, repo_name),
                all_platforms=False,
            )
        assert "multi-platform index" in str(caught.value)
        assert f"linux/arm64 {images.arm64}" in str(caught.value)
        assert "--all-platforms" in str(caught.value)


class TestAcrossRegistries:
    async def test_streams_layers_then_skips_existing(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """Between registries blobs are streamed; a second copy finds them all present."""
        source = pinned(anonymous_registry, "src/layers", images.layers)
        target = Repository(second_registry.host, repo_name)
        first = await copy_image(
            client_for(anonymous_registry),
            source,
            destination=client_for(second_registry),
            to=target,
        )
        assert (first.blobs_copied, first.blobs_mounted, first.blobs_skipped) == (5, 0, 0)
        assert first.bytes_copied > 800_000
        assert skopeo_digest(f"{second_registry.host}/{repo_name}@{images.layers}") == images.layers
        again = await copy_image(
            client_for(anonymous_registry),
            source,
            destination=client_for(second_registry),
            to=target,
            tag="t",
        )
        assert (again.blobs_copied, again.blobs_skipped) == (0, 5)
        assert skopeo_digest(f"{second_registry.host}/{repo_name}:t") == images.layers

    async def test_index_to_token_registry_over_tls(
        self, anonymous_registry, token_registry, ca, images, client_for, repo_name
    ):
        """An index reaches a token-auth TLS registry with the same digest and the tag."""
        destination = client_for(
            token_registry, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=ca.ca_file
        )
        result = await copy_image(
            client_for(anonymous_registry),
            pinned(anonymous_registry, "src/multi", images.multi),
            destination=destination,
            to=Repository(token_registry.host, repo_name),
            tag="release",
        )
        assert result.image.digest == Digest.parse(images.multi)
        assert result.manifests == 3
        got = skopeo_digest(
            f"{token_registry.host}/{repo_name}:release", creds=f"{TOKEN_USER}:{TOKEN_PASSWORD}"
        )
        assert got == images.multi


def tampering_proxy(upstream: str, *, target: str = "/manifests/"):
    """A loopback proxy that changes one byte of every manifest (or blob) body it forwards."""

    class Handler(QuietHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            response = httpx.request(
                self.command, upstream + self.path, headers=headers, content=body
            )
            content = response.content
            if self.command == "GET" and target in self.path and response.status_code == 200:
                at = (
                    content.index(b"sha256:", 20) + 7
                    if target == "/manifests/"
                    else len(content) // 2
                )
                flipped = b"0" if content[at : at + 1] != b"0" else b"1"
                content = content[:at] + flipped + content[at + 1 :]
            out = {
                k: v
                for k, v in response.headers.items()
                if k.lower()
                not in ("content-length", "transfer-encoding", "connection", "content-encoding")
            }
            self.reply(response.status_code, content, out)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    return serve_http(Handler)


class TestTampering:
    async def test_altered_manifest_byte_is_refused(self, anonymous_registry, images, client_for):
        """A manifest altered in transit is refused with DigestMismatch, by tag and by digest."""
        with tampering_proxy(anonymous_registry.url) as url:
            proxy = RegistryProcess(
                host=url.removeprefix("http://"), url=url, directory=None, process=None
            )
            client = client_for(proxy)
            for reference in ("src/single:v1", f"src/single@{images.single}"):
                with pytest.raises(errors.DigestMismatch) as caught:
                    await client.resolve(ImageRef.parse(f"{proxy.host}/{reference}"))
                assert "refusing it" in str(caught.value)
                assert caught.value.retryable is False

    async def test_copy_through_tampering_proxy_is_refused(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """A copy whose source manifest is altered stops before anything is pushed."""
        with tampering_proxy(anonymous_registry.url) as url:
            proxy = RegistryProcess(
                host=url.removeprefix("http://"), url=url, directory=None, process=None
            )
            destination = client_for(second_registry)
            with pytest.raises(errors.DigestMismatch):
                await copy_image(
                    client_for(proxy),
                    pinned(proxy, "src/multi", images.multi),
                    destination=destination,
                    to=Repository(second_registry.host, repo_name),
                )
        with pytest.raises((errors.ManifestUnknown, errors.RepositoryUnknown)):
            await destination.resolve(
                ImageRef.parse(f"{second_registry.host}/{repo_name}@{images.multi}")
            )

    async def test_altered_blob_is_not_committed(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """A layer altered in transit is refused and never committed at the destination."""
        with tampering_proxy(anonymous_registry.url, target="/blobs/") as url:
            proxy = RegistryProcess(
                host=url.removeprefix("http://"), url=url, directory=None, process=None
            )
            destination = client_for(second_registry)
            with pytest.raises(errors.DigestMismatch) as caught:
                await copy_image(
                    client_for(proxy),
                    pinned(proxy, "src/layers", images.layers),
                    destination=destination,
                    to=Repository(second_registry.host, repo_name),
                )
        assert "does not hash to its digest" in str(caught.value)
        manifest = await client_for(anonymous_registry).fetch_manifest(
            Repository(anonymous_registry.host, "src/layers"), Digest.parse(images.layers)
        )
        target = Repository(second_registry.host, repo_name)
        present = [await destination.has_blob(target, blob.digest) for blob in manifest.blobs]
        assert not all(present)


class RewritingTransport(httpx.AsyncHTTPTransport):
    """The real transport, recording requests and optionally changing manifest answers.

    ``drop_put_digest`` removes ``Docker-Content-Digest`` from manifest PUT answers
    (the header is optional in the spec); ``put_digest`` replaces it;
    ``alter_get`` changes one byte of manifest bodies read from ``alter_get``'s path.
    """

    def __init__(
        self,
        *,
        drop_put_digest: bool = False,
        put_digest: str | None = None,
        alter_get: str | None = None,
    ) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self.drop_put_digest = drop_put_digest
        self.put_digest = put_digest
        self.alter_get = alter_get

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        path = request.url.path
        self.seen.append((request.method, path))
        if "/manifests/" not in path:
            return response
        headers = httpx.Headers(response.headers)
        content = await response.aread()
        if request.method == "PUT" and self.drop_put_digest:
            del headers["Docker-Content-Digest"]
        if request.method == "PUT" and self.put_digest:
            headers["Docker-Content-Digest"] = self.put_digest
        if request.method == "GET" and path == self.alter_get and response.status_code == 200:
            content = content.replace(b"sha256:", b"sha256:0", 1)[: len(content)]
        headers.pop("Content-Length", None)
        return httpx.Response(response.status_code, headers=headers, content=content)


class TestDestinationCheck:
    async def test_confirmed_put_needs_no_read_back(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """When the last PUT's Docker-Content-Digest names the source digest, nothing is re-read."""
        transport = RewritingTransport()
        client = client_for(anonymous_registry, transport=transport)
        result = await copy_image(
            client,
            pinned(anonymous_registry, "src/multi", images.multi),
            destination=client,
            to=Repository(anonymous_registry.host, repo_name),
            tag="v1",
        )
        assert result.image.digest == Digest.parse(images.multi)
        reads = [path for method, path in transport.seen if method == "GET"]
        assert not [path for path in reads if path.startswith(f"/v2/{repo_name}/")]
        assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:v1") == images.multi

    async def test_without_the_header_the_tag_is_read_back(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """A registry that omits the optional header gets the tag read back and hashed."""
        transport = RewritingTransport(drop_put_digest=True)
        client = client_for(anonymous_registry, transport=transport)
        await copy_image(
            client,
            pinned(anonymous_registry, "src/single", images.single),
            destination=client,
            to=Repository(anonymous_registry.host, repo_name),
            tag="v1",
        )
        assert transport.seen[-1] == ("GET", f"/v2/{repo_name}/manifests/v1")

    async def test_read_back_that_differs_is_refused(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """Without the header, a read-back whose bytes differ raises DigestMismatch."""
        transport = RewritingTransport(
            drop_put_digest=True, alter_get=f"/v2/{repo_name}/manifests/v1"
        )
        client = client_for(anonymous_registry, transport=transport)
        with pytest.raises(errors.DigestMismatch):
            await copy_image(
                client,
                pinned(anonymous_registry, "src/single", images.single),
                destination=client,
                to=Repository(anonymous_registry.host, repo_name),
                tag="v1",
            )

    async def test_put_answer_naming_another_digest_is_refused(
        self, anonymous_registry, images, client_for, repo_name
    ):
        """A destination that says it stored another digest fails the copy."""
        transport = RewritingTransport(put_digest="sha256:" + "0" * 64)
        client = client_for(anonymous_registry, transport=transport)
        with pytest.raises(errors.DigestMismatch) as caught:
            await copy_image(
                client,
                pinned(anonymous_registry, "src/single", images.single),
                destination=client,
                to=Repository(anonymous_registry.host, repo_name),
                tag="v1",
            )
        assert "stored the manifest as sha256:000" in str(caught.value)


def forwarding_proxy(
    upstream: str,
    *,
    seen: list[tuple[str, str]] | None = None,
    refused: list[str] | None = None,
):
    """A loopback proxy before a registry, recording every (method, path) in ``seen``.

    Given ``refused``, it stands in for a registry (or a proxy before it) that
    answers 413 to a blob in one PUT, and records those paths there. Upload
    ``Location`` headers are pointed back at the proxy.
    """
    record = seen if seen is not None else []

    class Handler(QuietHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            record.append((self.command, self.path))
            monolithic = self.command == "PUT" and "/blobs/uploads/" in self.path and length
            if refused is not None and monolithic:
                refused.append(self.path)
                self.reply(413, b"request entity too large", {"Connection": "close"})
                return
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            response = httpx.request(
                self.command, upstream + self.path, headers=headers, content=body
            )
            here = f"http://{self.headers['Host']}"
            out = {
                k: v.replace(upstream, here) if k.lower() == "location" else v
                for k, v in response.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            self.reply(response.status_code, response.content, out)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    return serve_http(Handler)


class TestChunkedUploads:
    async def test_blobs_above_the_chunk_size_go_in_patches(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """With chunk_size set, bigger blobs are PATCHed in pieces; the digest survives."""
        transport = RewritingTransport()
        destination = client_for(second_registry, transport=transport, chunk_size=64 * 1024)
        result = await copy_image(
            client_for(anonymous_registry),
            pinned(anonymous_registry, "src/layers", images.layers),
            destination=destination,
            to=Repository(second_registry.host, repo_name),
            tag="v1",
        )
        assert result.blobs_copied == 5
        patches = [path for method, path in transport.seen if method == "PATCH"]
        assert len(patches) == 4 * 4  # four ~200 kB layers in 64 KiB pieces; config in one PUT
        assert skopeo_digest(f"{second_registry.host}/{repo_name}:v1") == images.layers

    async def test_configured_chunk_size_is_the_upload_chunk(
        self, anonymous_registry, second_registry, images, tmp_path, repo_name
    ):
        """A registry definition's `chunk_size` is the PATCH size of copies into that registry."""
        seen: list[tuple[str, str]] = []
        with forwarding_proxy(second_registry.url, seen=seen) as url:
            config = tmp_path / "conveyor.yaml"
            config.write_text(
                f"""\
registries:
  source: {{url: "{anonymous_registry.url}", tls: {{insecure: true}}}}
  small: {{url: "{url}", tls: {{insecure: true}}, chunk_size: 64KiB}}
  large: {{url: "{url}", tls: {{insecure: true}}, chunk_size: 131072}}
"""
            )
            definitions = loader.load(config)
            registries = wiring.ConfiguredRegistries(definitions.registries, {})
            for name in ("small", "large"):
                await registries.transfer(
                    pinned(anonymous_registry, "src/layers", images.layers),
                    source="source",
                    destination=name,
                    to=Repository(definitions.registries[name].host, f"{repo_name}-{name}"),
                    tag="v1",
                )
        patches = {
            name: [p for m, p in seen if m == "PATCH" and f"/{repo_name}-{name}/" in p]
            for name in ("small", "large")
        }
        # Four layers of ~200 kB: 4 chunks each at 64 KiB, 2 at 128 KiB; the config is one PUT.
        assert (len(patches["small"]), len(patches["large"])) == (4 * 4, 4 * 2)
        for name in ("small", "large"):
            assert skopeo_digest(f"{second_registry.host}/{repo_name}-{name}:v1") == images.layers

    async def test_refused_monolithic_upload_falls_back_to_chunks(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """A 413 to the single-request PUT makes the copy send blobs in PATCH chunks."""
        refused: list[str] = []
        with forwarding_proxy(second_registry.url, refused=refused) as url:
            proxy = RegistryProcess(
                host=url.removeprefix("http://"), url=url, directory=None, process=None
            )
            destination = client_for(proxy)
            result = await copy_image(
                client_for(anonymous_registry),
                pinned(anonymous_registry, "src/layers", images.layers),
                destination=destination,
                to=Repository(proxy.host, repo_name),
                tag="v1",
            )
        assert refused and result.blobs_copied == 5
        assert destination.monolithic_refused and destination.chunked(1)
        assert skopeo_digest(f"{second_registry.host}/{repo_name}:v1") == images.layers

    async def test_altered_blob_is_not_committed_in_chunks(
        self, anonymous_registry, second_registry, images, client_for, repo_name
    ):
        """Chunked uploads keep the hash check: the last chunk of a bad blob is never sent."""
        with tampering_proxy(anonymous_registry.url, target="/blobs/") as url:
            proxy = RegistryProcess(
                host=url.removeprefix("http://"), url=url, directory=None, process=None
            )
            destination = client_for(second_registry, chunk_size=64 * 1024)
            with pytest.raises(errors.DigestMismatch):
                await copy_image(
                    client_for(proxy),
                    pinned(proxy, "src/layers", images.layers),
                    destination=destination,
                    to=Repository(second_registry.host, repo_name),
                )
