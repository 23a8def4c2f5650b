"""Honest in-memory fakes of the ports, for unit and service tests.

InMemoryRegistry implements core.ports.Registry completely and statefully:
manifests are stored by digest, tags point at digests, copies keep digests.
It also answers conditional requests (core.ports.ConditionalRegistry) as a
registry that sends validators would: the tag list's ETag is a hash of the
names, a manifest's ETag is its quoted digest; ``calls`` records what was asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.core.errors import RegistryError
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.polling import TagCheck, TagListing, Validators


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
    calls: list[str] = field(default_factory=list)
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
        self.calls.append("resolve")
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
        self.calls.append("list_tags")
        return sorted(tag for (name, tag) in self.tags if name == repository.name)

    async def list_tags_if_changed(
        self, repository: Repository, validators: Validators
    ) -> TagListing:
        tags = tuple(await self.list_tags(repository))
        etag = '"' + hashlib.sha256("\n".join(tags).encode()).hexdigest() + '"'
        if validators.etag == etag:
            self.calls[-1] = "list_tags:304"
            return TagListing(tags=None, validators=Validators(etag=etag))
        return TagListing(tags=tags, validators=Validators(etag=etag))

    async def check_tag(self, ref: ImageRef, *, digest: Digest, etag: str | None) -> TagCheck:
        current = self.tags.get((ref.repository.name, ref.tag or "latest"))
        if current is None:
            raise ManifestUnknownError(f"{ref}: manifest unknown")
        now = f'"{current}"'
        self.calls.append("check_tag:304" if etag == now else "check_tag")
        return TagCheck(unchanged=current == digest, etag=now, digest=current)

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
