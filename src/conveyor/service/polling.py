"""Polling an artifact source: which version does it offer now, and did anything change?

A poll asks the registry two questions, each conditional on what the last
poll of the source saw (kept in the store, so a poller taking over in another
process carries on where the last one stopped):

1. **Did the tag list change?** ``GET /v2/<name>/tags/list`` with
   ``If-None-Match`` / ``If-Modified-Since`` when the registry gave
   validators last time. On 304 the policy's choice cannot have changed
   (policies that choose by tag names only; ``newest`` reads creation times,
   so its list is always read in full) and no selection runs.
2. **Does the chosen tag still name the same digest?** A ``HEAD`` of the
   tag's manifest, with ``If-None-Match`` when the registry gave the manifest
   an ``ETag``. This question is asked even when the tag list answered 304:
   pushing a new image under an existing tag (what the ``digest`` policy
   follows) leaves the tag list unchanged while the tag moved. Only when the
   tag moved, or on the first poll, is the manifest read and hashed.

A registry that gives no validators (registry 2.8.2 on tags/list, Quay) is
polled with plain requests and still works; clients that cannot make
conditional requests at all (``core.ports.ConditionalRegistry``) are polled
with ``list_tags`` and ``resolve``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from conveyor.config import models
from conveyor.core import versions
from conveyor.core.errors import PromotionRefused, RegistryError, TagRefused
from conveyor.core.images import ImageRef, PinnedImage
from conveyor.core.polling import PollState, TagListing, Validators
from conveyor.core.ports import ConditionalRegistry
from conveyor.service import selection
from conveyor.service.context import Services
from conveyor.store import polls
from conveyor.store.database import unit_of_work


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """What one poll found.

    ``image`` is the version the source offers now (None when no tag
    qualifies; ``reason`` says why). ``changed`` is False when the registry
    confirmed that nothing moved since the last poll.
    """

    image: PinnedImage | None
    changed: bool
    reason: str
    tags_not_modified: bool = False


def rule_fingerprint(services: Services, artifact: models.ArtifactSource) -> str:
    """A hash of everything that decides a source's version (a changed definition resets state)."""
    registry = services.registries.definition(artifact.registry)
    described = {
        "registry": [registry.url, registry.internal_url],
        "source": artifact.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


async def poll_source(services: Services, name: str) -> PollOutcome:
    """Poll one artifact source and remember what the registry said, for the next poll."""
    artifact = services.definitions.sources[name]
    with unit_of_work(services.engine, read_only=True) as session:
        state = polls.load_poll_state(session, name)
    outcome, seen = await _poll(services, name, artifact, state)
    if seen is not None:
        with unit_of_work(services.engine) as session:
            polls.save_poll_state(session, name, seen, now=services.clock())
    return outcome


async def _poll(
    services: Services, name: str, artifact: models.ArtifactSource, state: PollState | None
) -> tuple[PollOutcome, PollState | None]:
    rule = rule_fingerprint(services, artifact)
    if state is not None and not state.applies_to(rule):
        state = None
    client = services.registries.client(artifact.registry)
    conditional = client if isinstance(client, ConditionalRegistry) else None
    repository = selection.repository_of(services.registries, artifact)
    tag_filter, policy = selection.rule_of(artifact)

    if artifact.default is not None and artifact.default.digest is not None:
        # A pinned digest: nothing to watch; the run takes it (checked as a request would be).
        image = await selection.fix_artifact(
            services, name, artifact, tag=None, digest=None, values=dict(services.environ)
        )
        return PollOutcome(image=image, changed=True, reason="the source's default digest"), None

    not_modified = False
    if artifact.default is not None and artifact.default.tag is not None:
        tag: str | None = versions.resolve_template(artifact.default.tag, dict(services.environ))
        assert tag is not None
        try:
            versions.check_requested(tag, tag_filter)
        except TagRefused as refused:
            raise PromotionRefused([f"source '{name}': {refused}"]) from None
        reason = f"the source's default tag {tag}"
        validators = Validators()
    else:
        by_names = not isinstance(policy, versions.NewestPolicy)
        sent = state.tags if state is not None and by_names else Validators()
        if conditional is not None:
            listing = await conditional.list_tags_if_changed(repository, sent)
        else:
            listing = TagListing(
                tags=tuple(await client.list_tags(repository)), validators=Validators()
            )
        validators = listing.validators if by_names else Validators()
        if listing.tags is None:
            if state is None:
                raise RegistryError(
                    f"listing tags of {repository}: the registry answered 304 Not Modified to "
                    "a request without validators",
                    registry=repository.registry,
                )
            not_modified = True
            tag = state.tag
            reason = "the tag list has not changed since the last poll"
        else:
            chosen = await selection.choose_among(client, repository, artifact, listing.tags)
            tag = chosen.winner.tag if chosen.winner is not None else None
            reason = chosen.reason

    if tag is None:
        seen = PollState(rule=rule, tags=validators)
        nothing = f"source '{name}': {reason}"
        outcome = PollOutcome(
            image=None, changed=False, reason=nothing, tags_not_modified=not_modified
        )
        return outcome, seen

    ref = ImageRef(repository, tag=tag)
    check = None
    if state is not None and state.still_names(tag) and conditional is not None:
        assert state.digest is not None
        check = await conditional.check_tag(ref, digest=state.digest, etag=state.manifest_etag)
        if check.unchanged:
            seen = PollState(
                rule=rule, tags=validators, tag=tag, digest=state.digest, manifest_etag=check.etag
            )
            image = PinnedImage(repository=repository, digest=state.digest, tag=tag)
            return (
                PollOutcome(
                    image=image,
                    changed=False,
                    reason=f"{tag} still names {state.digest.short}",
                    tags_not_modified=not_modified,
                ),
                seen,
            )
    image = await client.resolve(ref)
    changed = state is None or (state.tag, state.digest) != (tag, image.digest)
    # The HEAD's ETag is kept only when it was for the digest just read (and hashed): an ETag
    # of another manifest could later answer 304 for a digest never seen.
    etag = check.etag if check is not None and check.digest == image.digest else None
    seen = PollState(rule=rule, tags=validators, tag=tag, digest=image.digest, manifest_etag=etag)
    return (
        PollOutcome(
            image=image,
            changed=changed,
            reason=f"{tag} names {image.digest.short}",
            tags_not_modified=not_modified,
        ),
        seen,
    )
