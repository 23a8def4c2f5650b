"""Referrers on real registry 2.8.2, which lacks the API: the sha256-<hex> tag fallback."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx

from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.registry import referrers
from conveyor.registry.client import DistributionRegistry
from conveyor.registry.copy import copy_image
from tests.support.registry import QuietHandler, RegistryProcess, serve_http, skopeo_digest

ATTESTATION = "application/vnd.conveyor.verification.v1+json"


async def test_push_and_list_referrers_through_fallback_tag(
    anonymous_registry, images, client_for, repo_name
):
    """Artifacts with a subject are listed through the sha256-<hex> tag index, no duplicates."""
    client = client_for(anonymous_registry)
    source = PinnedImage(
        repository=Repository(anonymous_registry.host, "src/single"),
        digest=Digest.parse(images.single),
    )
    await copy_image(
        client, source, destination=client, to=Repository(anonymous_registry.host, repo_name)
    )
    subject = PinnedImage(
        repository=Repository(anonymous_registry.host, repo_name), digest=source.digest
    )
    api = httpx.get(f"{anonymous_registry.url}/v2/{repo_name}/referrers/{subject.digest}")
    assert (api.status_code, api.text.strip()) == (404, "404 page not found")

    assert await referrers.list_referrers(client, subject) == []
    payload = json.dumps({"environment": "pre-release", "verified": True}).encode()
    first = await referrers.push_referrer(
        client,
        subject,
        artifact_type=ATTESTATION,
        payload=payload,
        payload_media_type=ATTESTATION,
        annotations={"org.opencontainers.image.created": "2026-11-28T14:02:11Z"},
    )
    again = await referrers.push_referrer(
        client,
        subject,
        artifact_type=ATTESTATION,
        payload=payload,
        payload_media_type=ATTESTATION,
        annotations={"org.opencontainers.image.created": "2026-11-28T14:02:11Z"},
    )
    other = await referrers.push_referrer(
        client,
        subject,
        artifact_type="application/vnd.example.sbom",
        payload=b"{}",
        payload_media_type="application/vnd.example.sbom",
    )
    assert first.digest == again.digest
    found = await referrers.list_referrers(client, subject)
    assert [d.digest for d in found] == [first.digest, other.digest]
    assert found[0].artifact_type == ATTESTATION
    assert found[0].annotations == {"org.opencontainers.image.created": "2026-11-28T14:02:11Z"}
    only = await referrers.list_referrers(client, subject, artifact_type=ATTESTATION)
    assert [d.digest for d in only] == [first.digest]

    tag = f"sha256-{subject.digest.hex}"
    assert referrers.fallback_tag(subject.digest) == tag
    index = await client.fetch_manifest(subject.repository, tag)
    assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:{tag}") == str(index.digest)
    artifact = await client.fetch_manifest(subject.repository, first.digest)
    assert artifact.subject is not None and artifact.subject.digest == subject.digest
    assert artifact.artifact_type == ATTESTATION


async def subject_copy(registry, images, client, repo_name: str) -> PinnedImage:
    """A fresh repository holding the single image: the subject of the test's referrers."""
    source = PinnedImage(
        repository=Repository(registry.host, "src/single"), digest=Digest.parse(images.single)
    )
    await copy_image(client, source, destination=client, to=Repository(registry.host, repo_name))
    return PinnedImage(repository=Repository(registry.host, repo_name), digest=source.digest)


def push_one(client, subject: PinnedImage, n: int):
    return referrers.push_referrer(
        client,
        subject,
        artifact_type=ATTESTATION,
        payload=json.dumps({"n": n}).encode(),
        payload_media_type=ATTESTATION,
    )


async def test_concurrent_pushes_in_one_process_keep_every_entry(
    anonymous_registry, images, client_for, repo_name
):
    """Tasks in one event loop and in other threads' loops all land in the fallback index."""
    client = client_for(anonymous_registry)
    subject = await subject_copy(anonymous_registry, images, client, repo_name)
    pushed: list[Digest] = []

    async def batch(the_client, numbers) -> None:
        async with anyio.create_task_group() as group:
            for n in numbers:

                async def one(n: int = n) -> None:
                    pushed.append((await push_one(the_client, subject, n)).digest)

                group.start_soon(one)

    def in_own_loop(numbers) -> None:
        async def run() -> None:
            async with DistributionRegistry(client.endpoint) as own:
                await batch(own, numbers)

        anyio.run(run)

    threads = [threading.Thread(target=in_own_loop, args=(range(k, k + 3),)) for k in (10, 20)]
    for thread in threads:
        thread.start()
    await batch(client, range(4))
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join)
    assert len(set(pushed)) == 10
    found = await referrers.list_referrers(client, subject)
    assert sorted(str(d.digest) for d in found) == sorted(map(str, pushed))


@contextlib.contextmanager
def paging_referrers_proxy(upstream: str, seen: list[str]):
    """Stand-in for a registry with a paginated referrers API (2.8.2 has none).

    Forwards everything to ``upstream`` except ``GET /v2/<name>/referrers/<digest>``,
    which it answers from the upstream's sha256-<hex> fallback index, one
    descriptor per page, linking the next page with a relative ``Link`` URL.
    """

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            match = re.fullmatch(r"/v2/(.+)/referrers/(sha256):([0-9a-f]{64})", url.path)
            if not match:
                return self._forward()
            seen.append(self.path)
            query = parse_qs(url.query)
            page = int(query.get("page", ["0"])[0])
            fallback = httpx.get(
                f"{upstream}/v2/{match[1]}/manifests/{match[2]}-{match[3]}",
                headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            )
            entries = fallback.json()["manifests"] if fallback.status_code == 200 else []
            wanted = query.get("artifactType", [None])[0]
            headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
            if wanted:
                entries = [e for e in entries if e.get("artifactType") == wanted]
                headers["OCI-Filters-Applied"] = "artifactType"
            if page + 1 < len(entries):
                next_query = urlencode(
                    {**({"artifactType": wanted} if wanted else {}), "page": page + 1}
                )
                headers["Link"] = f'<{url.path}?{next_query}>; rel="next"'
            body = {
                "schemaVersion": 2,
                "mediaType": headers["Content-Type"],
                "manifests": entries[page : page + 1],
            }
            self.reply(200, json.dumps(body).encode(), headers)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            response = httpx.request(
                self.command, upstream + self.path, headers=headers, content=body
            )
            out = {
                k: v
                for k, v in response.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            self.reply(response.status_code, response.content, out)

        do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    with serve_http(Handler) as url:
        yield url


async def test_referrers_api_pages_are_all_read(anonymous_registry, images, client_for, repo_name):
    """Every page of a paginated referrers answer is read, following relative Link URLs."""
    direct = client_for(anonymous_registry)
    subject = await subject_copy(anonymous_registry, images, direct, repo_name)
    pushed = [(await push_one(direct, subject, n)).digest for n in range(3)]
    sbom = await referrers.push_referrer(
        direct,
        subject,
        artifact_type="application/vnd.example.sbom",
        payload=b"{}",
        payload_media_type="application/vnd.example.sbom",
    )
    seen: list[str] = []
    with paging_referrers_proxy(anonymous_registry.url, seen) as url:
        proxy = RegistryProcess(
            host=url.removeprefix("http://"), url=url, directory=None, process=None
        )
        client = client_for(proxy)
        found = await referrers.list_referrers(
            client, replace(subject, repository=Repository(proxy.host, repo_name))
        )
        assert [d.digest for d in found] == [*pushed, sbom.digest]
        assert len(seen) == 4
        seen.clear()
        only = await referrers.list_referrers(
            client,
            replace(subject, repository=Repository(proxy.host, repo_name)),
            artifact_type=ATTESTATION,
        )
        assert [d.digest for d in only] == pushed
        assert len(seen) == 3 and all("artifactType=" in path for path in seen)
