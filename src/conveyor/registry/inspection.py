"""What ``conveyor image inspect`` shows: media type, platforms, created, labels, size.

Also the creation times the ``newest`` selection policy orders by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry import _tasks, manifests
from conveyor.registry.client import MAX_CONFIG_BYTES, DistributionRegistry
from conveyor.registry.manifests import Manifest, Platform


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformImage:
    """One image manifest: its platform, config facts and size (config + layers)."""

    digest: Digest
    media_type: str
    platform: Platform | None
    created: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    size: int
    layers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """An image or index as found in the registry."""

    image: PinnedImage
    media_type: str
    size: int  # manifest bytes plus every blob of every platform
    platforms: tuple[PlatformImage, ...]

    def to_json(self) -> dict[str, object]:
        """Stable JSON for ``--json``."""
        return {
            "image": str(self.image),
            "digest": str(self.image.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "platforms": [
                {
                    "platform": str(p.platform) if p.platform else None,
                    "digest": str(p.digest),
                    "mediaType": p.media_type,
                    "created": p.created,
                    "labels": dict(p.labels),
                    "size": p.size,
                    "layers": p.layers,
                }
                for p in self.platforms
            ],
        }


async def _platform_image(
    registry: DistributionRegistry, repository: Repository, manifest: Manifest
) -> PlatformImage:
    config = manifests.ImageConfig(created=None, labels={}, platform=None)
    if manifest.config is not None and manifest.config.media_type != manifests.OCI_EMPTY:
        raw = await registry.fetch_blob(repository, manifest.config.digest, limit=MAX_CONFIG_BYTES)
        config = manifests.parse_config(raw)
    return PlatformImage(
        digest=manifest.digest,
        media_type=manifest.media_type,
        platform=config.platform,
        created=config.created,
        labels=config.labels,
        size=sum(blob.size for blob in manifest.blobs),
        layers=len(manifest.layers),
    )


async def inspect_image(registry: DistributionRegistry, ref: ImageRef) -> ImageInfo:
    """Fetch (and verify) the manifest, its children and their configs."""
    repository = ref.repository
    top = await registry.fetch_manifest(repository, ref.digest or ref.reference)
    children: list[Manifest] = [top]
    if top.is_index:
        wanted = [
            child
            for child in top.manifests
            if child.media_type in manifests.IMAGE_TYPES
            and (child.platform is None or child.platform.os != "unknown")
        ]
        fetched: dict[int, Manifest] = {}

        async def fetch(i: int, digest: Digest) -> None:
            fetched[i] = await registry.fetch_manifest(repository, digest)

        async with _tasks.task_group() as group:
            for i, descriptor in enumerate(wanted):
                group.start_soon(fetch, i, descriptor.digest)
        children = [fetched[i] for i in range(len(wanted))]
    platforms = [await _platform_image(registry, repository, child) for child in children]
    size = len(top.raw) + sum(len(c.raw) for c in children if c is not top)
    size += sum(p.size for p in platforms)
    return ImageInfo(
        image=PinnedImage(repository=repository, digest=top.digest, tag=ref.tag),
        media_type=top.media_type,
        size=size,
        platforms=tuple(platforms),
    )


def parse_created(text: object) -> datetime | None:
    """An image config's ``created`` (RFC 3339, as Go writes it) as a datetime, or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


async def created_time(registry: DistributionRegistry, ref: ImageRef) -> datetime | None:
    """The ``created`` time in the config of the image ``ref`` names, or None if it has none.

    For an index, the config of its first image manifest (platforms are built
    together), so every tag costs one config read.
    """
    manifest = await registry.fetch_manifest(ref.repository, ref.reference)
    if manifest.is_index:
        child = next(
            (
                c
                for c in manifest.manifests
                if c.media_type in manifests.IMAGE_TYPES
                and (c.platform is None or c.platform.os != "unknown")
            ),
            None,
        )
        if child is None:
            return None
        manifest = await registry.fetch_manifest(ref.repository, child.digest)
    if manifest.config is None or manifest.config.media_type == manifests.OCI_EMPTY:
        return None
    raw = await registry.fetch_blob(ref.repository, manifest.config.digest, limit=MAX_CONFIG_BYTES)
    return parse_created(manifests.parse_config(raw).created)


async def created_times(
    registry: DistributionRegistry, repository: Repository, tags: Sequence[str]
) -> dict[str, datetime | None]:
    """``created_time`` of each tag, read concurrently (within the client's request limit)."""
    found: dict[str, datetime | None] = {}

    async def read(tag: str) -> None:
        found[tag] = await created_time(registry, ImageRef(repository, tag=tag))

    async with _tasks.task_group() as group:
        for tag in dict.fromkeys(tags):
            group.start_soon(read, tag)
    return found
