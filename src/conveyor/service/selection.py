"""Fixing an artifact source's image: a requested tag or digest, the default, or the policy's pick.

A tag is only a way to find a digest: every path ends in a PinnedImage read
from the registry, and a requested tag the filter rejects is refused.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.config import models
from conveyor.config.selection import FilterModel, PolicyModel
from conveyor.core.errors import InvalidInput, NotFound, PromotionRefused
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.ports import Registry
from conveyor.service.context import Services

# A requested digest must be reachable through a tag the filter admits; resolving
# tags costs one HEAD each, so at most this many are tried (newest policy order first).
MAX_TAGS_FOR_DIGEST = 200


def repository_of(services: Services, artifact: models.ArtifactSource) -> Repository:
    """The source's repository, addressed through its registry's public host."""
    registry = services.registries.definition(artifact.registry)
    return Repository(registry.host, artifact.repository)


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
    repository = repository_of(services, artifact)
    rule = Rule(filter=artifact.filter, policy=artifact.policy)
    if tag is not None and digest is not None:
        raise InvalidInput("give --tag or --digest, not both")
    if tag is None and digest is None and artifact.default is not None:
        if artifact.default.digest is not None:
            digest = artifact.default.digest
        elif artifact.default.tag is not None:
            from conveyor.service.runs import render_tag

            tag = render_tag(artifact.default.tag, values)
    if tag is not None:
        refusal = _refusal(rule, tag)
        if refusal is not None:
            raise PromotionRefused([f"tag '{tag}' is refused by source '{name}': {refusal}"])
        return await client.resolve(ImageRef(repository, tag=tag))
    tags = list(await client.list_tags(repository))
    if digest is not None:
        return await _by_digest(client, repository, name, rule, tags, Digest.parse(digest))
    winner = _pick(rule, tags)
    if winner is None:
        raise NotFound(
            "version",
            f"{repository}",
            hint=f"no tag of source '{name}' passes its filter and policy "
            f"({len(tags)} tags seen); try `conveyor select --source {name} --explain`",
        )
    return await client.resolve(ImageRef(repository, tag=winner))


async def _by_digest(
    client: Registry,
    repository: Repository,
    name: str,
    rule: Rule,
    tags: list[str],
    digest: Digest,
) -> PinnedImage:
    admitted = _admitted(rule, tags)[:MAX_TAGS_FOR_DIGEST]
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


# --- adapter to the version-selection rules (core.versions) ---------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    filter: FilterModel | None
    policy: PolicyModel | None


def _refusal(rule: Rule, tag: str) -> str | None:
    """Why the filter rejects ``tag``, or None when it admits it."""
    if (
        rule.filter is not None
        and rule.filter.glob
        and not fnmatch.fnmatchcase(tag, rule.filter.glob)
    ):
        return f"it does not match the glob '{rule.filter.glob}'"
    return None


def _admitted(rule: Rule, tags: list[str]) -> list[str]:
    """Admitted tags, best first by the policy."""
    kept = [t for t in tags if _refusal(rule, t) is None]
    return sorted(kept, key=_semver_key, reverse=True)


def _semver_key(tag: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", tag)
    return tuple(int(n) for n in numbers[:3])


def _pick(rule: Rule, tags: list[str]) -> str | None:
    admitted = _admitted(rule, tags)
    return admitted[0] if admitted else None
