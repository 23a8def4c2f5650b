"""What ``conveyor image inspect`` shows: media type, platforms, created, labels, size.

Also the creation times the ``newest`` selection policy orders by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry import _tasks, manifests
from conveyor.registry.client import MAX_CONFIG_BYTES, DistributionRegistry
from conveyor.registry.manifests import Descriptor, Manifest, Platform


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


def _image_children(index: Manifest) -> list[Descriptor]:
    """An index's image manifests, without attestation entries (platform ``unknown``)."""
    return [
        child
        for child in index.manifests
        if child.media_type in manifests.IMAGE_TYPES
        and (child.platform is None or child.platform.os != "unknown")
    ]


async def _config(
    registry: DistributionRegistry, repository: Repository, manifest: Manifest
) -> manifests.ImageConfig:
    """The image's config (empty when it has none, or the OCI empty descriptor)."""
    if manifest.config is None or manifest.config.media_type == manifests.OCI_EMPTY:
        return manifests.ImageConfig(created=None, labels={}, platform=None)
    raw = await registry.fetch_blob(repository, manifest.config.digest, limit=MAX_CONFIG_BYTES)
    return manifests.parse_config(raw)


async def _platform_image(
    registry: DistributionRegistry, repository: Repository, manifest: Manifest
) -> PlatformImage:
    config = await _config(registry, repository, manifest)
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
        wanted = _image_children(top)
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
    """An image config's ``created`` (RFC 3339, as Go writes it) as an aware datetime, or None.

    A time without a zone (RFC 3339 requires one, but some build tools leave
    it out) is taken as UTC, so every time compares with every other.
    """
    if not isinstance(text, str):
        return None
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


async def created_time(registry: DistributionRegistry, ref: ImageRef) -> datetime | None:
    """The ``created`` time in the config of the image ``ref`` names, or None if it has none.

    For an index, the config of its first image manifest (platforms are built
    together), so every tag costs one config read.
    """
    manifest = await registry.fetch_manifest(ref.repository, ref.reference)
    if manifest.is_index:
        children = _image_children(manifest)
        if not children:
            return None
        manifest = await registry.fetch_manifest(ref.repository, children[0].digest)
    return parse_created((await _config(registry, ref.repository, manifest)).created)


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
