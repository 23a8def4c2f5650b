"""Fixing an artifact source's image: a requested tag or digest, the default, or the policy's pick.

A tag is only a way to find a digest: every path ends in a PinnedImage read
from the registry, and a requested tag the filter rejects is refused.
The rules themselves are core.versions'; this module only feeds them the
registry's tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from conveyor.config import models
from conveyor.core import versions
from conveyor.core.errors import InvalidInput, NotFound, PromotionRefused, TagRefused
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.ports import Registry
from conveyor.service.context import Registries, Services

# A requested digest must be reachable through a tag the filter admits; resolving
# tags costs one request each, so at most this many are tried.
MAX_TAGS_FOR_DIGEST = 200


def repository_of(registries: Registries, artifact: models.ArtifactSource) -> Repository:
    """The source's repository, addressed through its registry's public host."""
    registry = registries.definition(artifact.registry)
    return Repository(registry.host, artifact.repository)


def rule_of(artifact: models.ArtifactSource) -> tuple[versions.TagFilter, versions.VersionPolicy]:
    """The source's filter and policy as core values (default: any stable semver)."""
    tag_filter = artifact.filter.to_core() if artifact.filter else versions.TagFilter()
    policy = artifact.policy.to_core() if artifact.policy else versions.SemverPolicy()
    return tag_filter, policy


async def select_tag(
    registries: Registries, artifact: models.ArtifactSource
) -> tuple[versions.Selection, list[str]]:
    """The policy's choice among the registry's current tags, with its explanation.

    For ``newest`` the registry is asked for the creation times of at most
    ``max_candidates`` tags: those ``versions.newest_candidates`` names.
    """
    client = registries.client(artifact.registry)
    repository = repository_of(registries, artifact)
    tags = list(await client.list_tags(repository))
    return await choose_among(client, repository, artifact, tags), tags


async def choose_among(
    client: Registry, repository: Repository, artifact: models.ArtifactSource, tags: Sequence[str]
) -> versions.Selection:
    """The policy's choice among ``tags`` (listed already); ``newest`` reads creation times."""
    tag_filter, policy = rule_of(artifact)
    created: Mapping[str, datetime | None] = {}
    if isinstance(policy, versions.NewestPolicy):
        inspected = versions.newest_candidates(tags, filter=tag_filter, policy=policy)
        created = await client.created(repository, inspected) if inspected else {}
    infos = [versions.TagInfo(tag, created=created.get(tag)) for tag in tags]
    return versions.select(infos, filter=tag_filter, policy=policy)


def admit_pushed(name: str, artifact: models.ArtifactSource, pushed: PinnedImage) -> PinnedImage:
    """A digest a registry event reported behind its tag, if the source's filter admits the tag.

    The registry already said which digest the push put behind the tag, so
    the tag is not looked up again: a later push of the same tag sends its
    own event.
    """
    assert pushed.tag is not None
    tag_filter, _ = rule_of(artifact)
    try:
        versions.check_requested(pushed.tag, tag_filter)
    except TagRefused as refused:
        raise PromotionRefused([f"source '{name}': {refused}"]) from None
    return pushed


async def fix_artifact(
    services: Services,
    name: str,
    artifact: models.ArtifactSource,
    *,
    tag: str | None,
    digest: str | None,
    values: Mapping[str, str],
) -> PinnedImage:
    """The image a run of an artifact source takes, pinned by digest."""
    client = services.registries.client(artifact.registry)
    repository = repository_of(services.registries, artifact)
    tag_filter, _ = rule_of(artifact)
    if tag is not None and digest is not None:
        raise InvalidInput("give --tag or --digest, not both")
    if tag is None and digest is None and artifact.default is not None:
        if artifact.default.digest is not None:
            digest = artifact.default.digest
        elif artifact.default.tag is not None:
            tag = versions.resolve_template(artifact.default.tag, values)
    if tag is not None:
        try:
            versions.check_requested(tag, tag_filter)
        except TagRefused as refused:
            raise PromotionRefused([f"source '{name}': {refused}"]) from None
        return await client.resolve(ImageRef(repository, tag=tag))
    if digest is not None:
        return await _by_digest(client, repository, name, artifact, Digest.parse(digest))
    selection, tags = await select_tag(services.registries, artifact)
    if selection.winner is None:
        raise NotFound(
            "version",
            f"{repository}",
            hint=f"source '{name}': {selection.reason} ({len(tags)} tags seen); "
            f"see `conveyor select --source {name} --explain`",
        )
    return await client.resolve(ImageRef(repository, tag=selection.winner.tag))


async def _by_digest(
    client: Registry,
    repository: Repository,
    name: str,
    artifact: models.ArtifactSource,
    digest: Digest,
) -> PinnedImage:
    tag_filter, _ = rule_of(artifact)
    tags = list(await client.list_tags(repository))
    admitted = [t for t in tags if tag_filter.explain(t) is None][:MAX_TAGS_FOR_DIGEST]
    for candidate in admitted:
        pinned = await client.resolve(ImageRef(repository, tag=candidate))
        if pinned.digest == digest:
            return pinned
    raise PromotionRefused(
        [
            f"{digest} is not behind any tag that source '{name}' admits "
            f"({len(admitted)} admitted tags checked); a digest must be reachable through a "
            "tag the filter accepts"
        ]
    )
