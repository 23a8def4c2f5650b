"""Honest in-memory fakes of the ports, for unit and service tests.

InMemoryRegistry implements core.ports.Registry completely and statefully:
manifests are stored by digest, tags point at digests, copies keep digests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.core.errors import RegistryError
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository


class ManifestUnknownError(RegistryError):
    """The manifest is not in the repository."""

    retryable = False


@dataclass
class InMemoryRegistry:
    """A registry held in dictionaries: (repository name, tag) -> digest, plus known digests
    and the creation time of each image that has one."""

    host: str
    tags: dict[tuple[str, str], Digest] = field(default_factory=dict)
    manifests: dict[str, set[Digest]] = field(default_factory=dict)
    created_at: dict[Digest, datetime] = field(default_factory=dict)
    config_reads: int = 0  # how many creation times were read, as a registry would count

    def push(
        self, repository: str, tag: str, content: bytes, *, created: datetime | None = None
    ) -> PinnedImage:
        """Store a manifest and point a tag at it (what a CI push does)."""
        digest = Digest.of(content)
        self.manifests.setdefault(repository, set()).add(digest)
        self.tags[(repository, tag)] = digest
        if created is not None:
            self.created_at[digest] = created
        return PinnedImage(repository=Repository(self.host, repository), digest=digest, tag=tag)

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        name = ref.repository.name
        if ref.digest is not None:
            if ref.digest not in self.manifests.get(name, set()):
                raise ManifestUnknownError(f"{ref}: manifest unknown")
            return PinnedImage(repository=ref.repository, digest=ref.digest, tag=ref.tag)
        digest = self.tags.get((name, ref.tag or "latest"))
        if digest is None:
            raise ManifestUnknownError(f"{ref}: manifest unknown")
        return PinnedImage(repository=ref.repository, digest=digest, tag=ref.tag)

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        return sorted(tag for (name, tag) in self.tags if name == repository.name)

    async def created(
        self, repository: Repository, tags: Sequence[str]
    ) -> Mapping[str, datetime | None]:
        found: dict[str, datetime | None] = {}
        for tag in tags:
            digest = self.tags.get((repository.name, tag))
            if digest is None:
                raise ManifestUnknownError(f"{repository}:{tag}: manifest unknown")
            self.config_reads += 1
            found[tag] = self.created_at.get(digest)
        return found

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        if image.digest not in self.manifests.get(image.repository.name, set()):
            raise ManifestUnknownError(f"{image}: manifest unknown")
        self.manifests.setdefault(to.name, set()).add(image.digest)
        if tag is not None:
            self.tags[(to.name, tag)] = image.digest
        return PinnedImage(repository=to, digest=image.digest, tag=tag)
