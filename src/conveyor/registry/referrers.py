"""OCI 1.1 referrers: push an artifact that names a ``subject``; list what refers to an image.

The referrers API (``GET /v2/<name>/referrers/<digest>``) is used when the
registry has it; otherwise (any 404, including 2.8.2's plain-text ``404 page
not found``) the client-maintained index under the tag ``<alg>-<hex>`` is read
and updated (distribution-spec v1.1.1 "Referrers Tag Schema", FORMATS.md 1.9).
A referrers API answer may come in pages (``Link: <...>; rel="next"``, spec
"Listing Referrers"); every page is read.

The fallback index is read-modify-write. Within one process the update is
done under a lock per (registry, repository, subject), shared by every task,
event loop and thread, so concurrent pushes in one process keep every entry.
Across processes nothing can help: the registry offers no compare-and-swap on
a tag (a PUT has no precondition), so two Conveyor processes pushing referrers
to the same subject at the same moment may still lose one entry; the spec
accepts this, and registries with the API do not have the problem.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urljoin

import anyio

from conveyor.core.errors import ManifestUnknown, RegistryError, UnsupportedMediaType
from conveyor.core.images import Digest, PinnedImage
from conveyor.registry import manifests
from conveyor.registry.client import DistributionRegistry
from conveyor.registry.manifests import Descriptor, Manifest


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema: ``<alg>-<hex>`` (``sha256-<64 hex>``)."""
    return f"{digest.algorithm}-{digest.hex}"


def _index(descriptors: list[Descriptor]) -> Manifest:
    body = {
        "schemaVersion": 2,
        "mediaType": manifests.OCI_INDEX,
        "manifests": [d.to_json() for d in descriptors],
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return Manifest(
        media_type=manifests.OCI_INDEX,
        digest=Digest.of(raw),
        raw=raw,
        manifests=tuple(descriptors),
    )


# Locks for the fallback index's read-modify-write, picked by a hash of the
# key: a fixed set, so the table never grows; two keys sharing a lock only wait
# for each other. threading locks work across event loops and threads; they
# are taken without blocking the event loop (a non-blocking try, then a short
# sleep), so a cancelled waiter never holds one.
_FALLBACK_LOCKS = tuple(threading.Lock() for _ in range(64))
LOCK_POLL_SECONDS = 0.01
# Referrers pages followed at most (a registry looping its Link would be a bug).
MAX_REFERRERS_PAGES = 1000


@asynccontextmanager
async def fallback_lock(
    registry: DistributionRegistry, subject: PinnedImage
) -> AsyncIterator[None]:
    """Hold this process's lock on ``subject``'s fallback index in ``registry``."""
    key = (registry.endpoint.url, subject.repository.name, fallback_tag(subject.digest))
    lock = _FALLBACK_LOCKS[hash(key) % len(_FALLBACK_LOCKS)]
    while not lock.acquire(blocking=False):
        await anyio.sleep(LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()


async def _fallback_entries(
    registry: DistributionRegistry, subject: PinnedImage
) -> list[Descriptor]:
    try:
        index = await registry.fetch_manifest(subject.repository, fallback_tag(subject.digest))
    except ManifestUnknown:
        return []
    return list(index.manifests)


async def list_referrers(
    registry: DistributionRegistry, subject: PinnedImage, *, artifact_type: str | None = None
) -> list[Descriptor]:
    """Descriptors of the manifests whose ``subject`` is this image (API, else tag schema)."""
    params = {"artifactType": artifact_type} if artifact_type else None
    url = registry.url(f"/v2/{subject.repository.name}/referrers/{subject.digest}")
    entries: list[Descriptor] = []
    seen: set[Digest] = set()
    visited: set[str] = set()
    while True:
        visited.add(url)
        response = await registry.request(
            "GET",
            url,
            what=f"listing referrers of {subject}",
            params=params,
            headers={"Accept": manifests.OCI_INDEX},
            ok=(200, 404),
        )
        if response.status_code == 404:
            if visited == {url}:  # no referrers API: the tag schema
                entries = await _fallback_entries(registry, subject)
                break
            raise RegistryError(
                f"referrers of {subject}: {registry.endpoint.host} answered 404 for the "
                f"next page it linked ({url})",
                registry=registry.endpoint.host,
            )
        for entry in _page(registry, subject, response.content):
            if entry.digest not in seen:
                seen.add(entry.digest)
                entries.append(entry)
        next_link = response.links.get("next", {}).get("url")
        if not next_link:
            break
        url = urljoin(str(response.url), next_link)
        params = None  # the Link carries the query the registry wants
        if url in visited or len(visited) >= MAX_REFERRERS_PAGES:
            break
    if artifact_type:
        entries = [e for e in entries if e.artifact_type == artifact_type]
    return entries


def _page(registry: DistributionRegistry, subject: PinnedImage, raw: bytes) -> list[Descriptor]:
    try:
        data = json.loads(raw)
        return [
            manifests.parse_descriptor(item, where=f"referrers of {subject}")
            for item in data.get("manifests") or []
        ]
    except (ValueError, AttributeError) as exc:
        raise UnsupportedMediaType(
            f"referrers of {subject}: {registry.endpoint.host} sent no image index",
            registry=registry.endpoint.host,
        ) from exc


async def push_referrer(
    registry: DistributionRegistry,
    subject: PinnedImage,
    *,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    annotations: Mapping[str, str] | None = None,
) -> PinnedImage:
    """Push an artifact manifest (empty config, one layer) whose ``subject`` is ``subject``.

    When the registry does not answer with ``OCI-Subject``, the fallback tag
    index is updated too (no duplicates). Returns the artifact, pinned.
    """
    target = await registry.fetch_manifest(subject.repository, subject.digest)
    repository = subject.repository
    empty = await registry.push_blob(repository, manifests.EMPTY_BLOB)
    layer = await registry.push_blob(repository, payload)
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": manifests.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": manifests.OCI_EMPTY, "digest": str(empty), "size": 2},
        "layers": [{"mediaType": payload_media_type, "digest": str(layer), "size": len(payload)}],
        "subject": {
            "mediaType": target.media_type,
            "digest": str(target.digest),
            "size": len(target.raw),
        },
    }
    if annotations:
        body["annotations"] = dict(annotations)
    raw = json.dumps(body, separators=(",", ":")).encode()
    artifact = manifests.parse_manifest(
        raw, content_type=manifests.OCI_MANIFEST, digest=Digest.of(raw), where="artifact"
    )
    response = await registry.push_manifest(repository, artifact)
    if "OCI-Subject" not in response.headers:
        async with fallback_lock(registry, subject):
            entries = await _fallback_entries(registry, subject)
            if all(e.digest != artifact.digest for e in entries):
                entries.append(
                    Descriptor(
                        media_type=manifests.OCI_MANIFEST,
                        digest=artifact.digest,
                        size=len(raw),
                        artifact_type=artifact_type,
                        annotations=dict(annotations or {}),
                    )
                )
                await registry.push_manifest(
                    repository, _index(entries), reference=fallback_tag(subject.digest)
                )
    return PinnedImage(repository=repository, digest=artifact.digest)
