"""The seams: one small Protocol per integration kind, in core types only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from conveyor.core.images import ImageRef, PinnedImage, Repository


class Registry(Protocol):
    """One OCI Distribution endpoint, as seen with one set of credentials."""

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        """The digest a tag (or digest) names now; raises RegistryError subclasses."""
        ...

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        """Every tag of the repository, de-duplicated, in registry order."""
        ...

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        """Copy exactly this digest to another repository; the result has the same digest."""
        ...
