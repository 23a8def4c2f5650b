"""Copy an image by digest, index and all, and prove the destination has the same digest.

Promotion without touching disk (FORMATS.md 1.7): blobs first, then child
manifests by digest, then the index (or manifest) bytes, unchanged, so the
digest is the same in every registry. Within one registry, blobs are
cross-repository mounted (no layer bytes pass through Conveyor); between
registries they are streamed GET -> PUT, a few at a time, skipping blobs the
destination already has; a blob larger than the destination's ``chunk_size``
(or every blob, once the destination refused a single-request upload) goes up
in PATCH chunks instead. Data is passed on as the socket delivers it (reads
of up to 256 KiB), so memory stays bounded by ``concurrency x`` a few socket
reads, whatever the layer or chunk size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import anyio

from conveyor.core.errors import DigestMismatch, InvalidInput, RegistryUnavailable
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.registry import _tasks, manifests
from conveyor.registry.client import DistributionRegistry, MonolithicRefused
from conveyor.registry.manifests import Descriptor, Manifest

# Concurrent blob transfers per copy (skopeo copies 6 layers at a time).
BLOB_CONCURRENCY = 6
# A streamed blob cannot be replayed inside one request, so the whole transfer
# (new upload session, new GET) is retried on transient failures.
BLOB_ATTEMPTS = 3


class CopyProgress(Protocol):
    """Receives blob transfer progress (e.g. a progress bar); all methods are cheap."""

    def blob_started(self, digest: Digest, size: int) -> None: ...
    def blob_advanced(self, digest: Digest, done: int) -> None: ...
    def blob_finished(self, digest: Digest, how: str) -> None: ...


class _NoProgress:
    def blob_started(self, digest: Digest, size: int) -> None:
        return None

    def blob_advanced(self, digest: Digest, done: int) -> None:
        return None

    def blob_finished(self, digest: Digest, how: str) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyResult:
    """What a copy did; ``image`` has the source's digest (checked at the destination)."""

    source: PinnedImage
    image: PinnedImage
    media_type: str
    manifests: int
    blobs_mounted: int
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int


@dataclass(slots=True)
class _Copy:
    source: DistributionRegistry
    from_repository: Repository
    destination: DistributionRegistry
    to: Repository
    progress: CopyProgress
    limit: anyio.Semaphore
    done: dict[Digest, anyio.Event]
    mounted: int = 0
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    manifests: int = 0

    @property
    def same_registry(self) -> bool:
        return self.source is self.destination or self.source.endpoint == self.destination.endpoint

    async def blob(self, descriptor: Descriptor) -> None:
        event = self.done.get(descriptor.digest)
        if event is not None:  # another manifest of this copy shares the blob
            await event.wait()
            return
        event = self.done[descriptor.digest] = anyio.Event()
        try:
            await self._blob(descriptor)
        finally:
            event.set()

    async def _blob(self, descriptor: Descriptor) -> None:
        digest = descriptor.digest
        self.progress.blob_started(digest, descriptor.size)
        # Mounts move no bytes: only the registry's request limit bounds them.
        if self.same_registry and await self.destination.mount_blob(
            self.to, digest, source=self.from_repository
        ):
            self.mounted += 1
            self.progress.blob_finished(digest, "mounted")
            return
        async with self.limit:
            await self._transfer(descriptor)

    async def _transfer(self, descriptor: Descriptor) -> None:
        digest = descriptor.digest
        if await self.destination.has_blob(self.to, digest):
            self.skipped += 1
            self.progress.blob_finished(digest, "exists")
            return
        for attempt in range(BLOB_ATTEMPTS):
            try:
                try:
                    await self._stream(descriptor)
                except MonolithicRefused:
                    # Send this blob (and every later one) in PATCH chunks.
                    self.destination.refuse_monolithic()
                    await self._stream(descriptor)
                break
            except RegistryUnavailable:
                if attempt == BLOB_ATTEMPTS - 1:
                    raise
                await anyio.sleep(0.5 * 2**attempt)
        self.copied += 1
        self.bytes_copied += descriptor.size
        self.progress.blob_finished(digest, "copied")

    async def _stream(self, descriptor: Descriptor) -> None:
        digest = descriptor.digest
        what = f"copying blob {digest.short} to {self.to}"
        location = await self.destination.start_upload(self.to)
        url = self.source.url(f"/v2/{self.from_repository.name}/blobs/{digest}")
        upload = (
            self.destination.patch_stream
            if self.destination.chunked(descriptor.size)
            else self.destination.put_stream
        )
        async with self.source.stream("GET", url, what=f"reading blob {digest.short}") as response:
            await upload(
                location,
                digest=digest,
                size=descriptor.size,
                chunks=self._checked(response.aiter_raw(), descriptor),
                what=what,
            )

    async def _checked(
        self, chunks: AsyncIterator[bytes], descriptor: Descriptor
    ) -> AsyncIterator[bytes]:
        """Pass chunks through, refusing to send the last one if the blob does not hash right."""
        hasher = hashlib.new(descriptor.digest.algorithm)
        done = 0
        pending: bytes | None = None
        async for chunk in chunks:
            if pending is not None:
                yield pending
            hasher.update(chunk)
            done += len(chunk)
            self.progress.blob_advanced(descriptor.digest, done)
            pending = chunk
        if hasher.hexdigest() != descriptor.digest.hex or done != descriptor.size:
            raise DigestMismatch(
                f"blob {descriptor.digest} from {self.source.endpoint.host} does not hash to its "
                f"digest (or is not {descriptor.size} bytes); refusing to copy it",
                registry=self.source.endpoint.host,
            )
        if pending is not None:
            yield pending

    async def manifest(self, manifest: Manifest, *, reference: str | None = None) -> bool:
        """Copy what ``manifest`` references, then PUT it.

        True when the registry's ``Docker-Content-Digest`` answer confirms the
        digest (``push_manifest`` raises DigestMismatch when it names another).
        """
        if manifest.is_index:
            async with _tasks.task_group() as group:
                for child in manifest.manifests:
                    group.start_soon(self.child, child)
        else:
            async with _tasks.task_group() as group:
                for blob in manifest.blobs:
                    group.start_soon(self.blob, blob)
        response = await self.destination.push_manifest(self.to, manifest, reference=reference)
        self.manifests += 1
        claimed: str | None = response.headers.get("Docker-Content-Digest")
        return claimed == str(manifest.digest)

    async def child(self, descriptor: Descriptor) -> None:
        if descriptor.media_type not in manifests.INDEX_TYPES + manifests.IMAGE_TYPES:
            return  # not a manifest (e.g. an attestation blob): nothing to copy by digest
        child = await self.source.fetch_manifest(self.from_repository, descriptor.digest)
        await self.manifest(child)


def _refuse_index(image: PinnedImage, manifest: Manifest) -> InvalidInput:
    platforms = ", ".join(f"{child.platform or '?'} {child.digest}" for child in manifest.manifests)
    return InvalidInput(
        f"{image} is a multi-platform index ({platforms}); copy all of it with "
        "--all-platforms (all_platforms=True), or copy one platform by its digest"
    )


async def copy_image(
    source: DistributionRegistry,
    image: PinnedImage,
    *,
    destination: DistributionRegistry,
    to: Repository,
    tag: str | None = None,
    all_platforms: bool = True,
    progress: CopyProgress | None = None,
    concurrency: int = BLOB_CONCURRENCY,
    manifest: Manifest | None = None,
) -> CopyResult:
    """Copy exactly ``image`` (with every child of an index) to ``to``, optionally tagging it.

    Afterwards the destination must hold the source digest, or DigestMismatch
    is raised: the bytes PUT are the source's, hashed here, and the registry's
    answer to the last PUT names the digest of what it stored under the tag
    (``Docker-Content-Digest``). When a registry leaves that optional header
    out, the manifest is read back (by tag, else by digest) and hashed instead.
    Idempotent.
    ``manifest`` saves a request when the caller already fetched (and so
    verified) the source manifest; it must carry ``image.digest``.
    """
    if manifest is None or manifest.digest != image.digest:
        manifest = await source.fetch_manifest(image.repository, image.digest)
    if manifest.is_index and not all_platforms:
        raise _refuse_index(image, manifest)
    job = _Copy(
        source=source,
        from_repository=image.repository,
        destination=destination,
        to=to,
        progress=progress or _NoProgress(),
        limit=anyio.Semaphore(concurrency),
        done={},
    )
    confirmed = await job.manifest(manifest, reference=tag)
    if not confirmed:
        # No Docker-Content-Digest (optional in the spec): read back what the
        # destination serves and hash it, by tag when one was pushed (proves
        # tag -> digest), else by digest (fetch_manifest compares).
        stored = await destination.fetch_manifest(to, tag or image.digest)
        if stored.digest != image.digest:
            raise DigestMismatch(
                f"{to}:{tag} points at {stored.digest} after the copy, not {image.digest}",
                registry=destination.endpoint.host,
            )
    return CopyResult(
        source=image,
        image=PinnedImage(repository=to, digest=image.digest, tag=tag),
        media_type=manifest.media_type,
        manifests=job.manifests,
        blobs_mounted=job.mounted,
        blobs_copied=job.copied,
        blobs_skipped=job.skipped,
        bytes_copied=job.bytes_copied,
    )
