"""Cross-reference checks: every name a definition uses must exist, in the right place.

Unknown registries, sources, pipelines, environments and webhooks; an
environment that requires a later (or itself, or a missing) environment;
cycles between pipeline sources; duplicate step names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.config import models, problems, steps
from conveyor.core.errors import Problem

if TYPE_CHECKING:
    from conveyor.config.loader import Definitions, Origin


def check(definitions: Definitions) -> list[Problem]:
    """Every reference problem in the loaded definitions."""
    return [
        *_environments(definitions),
        *_sources(definitions),
        *_webhooks(definitions),
        *_pipelines(definitions),
        *_cycles(definitions),
    ]


def _unknown(
    definitions: Definitions,
    *,
    owner: tuple[str, str],
    sub: Sequence[str | int],
    section: str,
    name: str,
    kind: str,
) -> Iterator[Problem]:
    known = definitions.names(section)
    if name in known:
        return
    origin = definitions.origins[owner]
    if known:
        valid = f"; defined: {', '.join(sorted(known))}"
    else:
        valid = f"; no {section} are defined"
    message = f"unknown {kind} '{name}'{problems.suggest(name, known)}{valid}"
    yield origin.problem(message, sub=sub)


def _environments(definitions: Definitions) -> Iterator[Problem]:
    order = [e.name for e in definitions.environments]
    for position, environment in enumerate(definitions.environments):
        owner = ("environments", environment.name)
        origin = definitions.origins[owner]
        listed = isinstance(_raw(origin).get("requires"), list)
        for index, required in enumerate(environment.requires):
            sub: list[str | int] = ["requires", index] if listed else ["requires"]
            if required == environment.name:
                yield origin.problem(f"'{required}' cannot require itself", sub=sub)
            elif required in order and order.index(required) > position:
                yield origin.problem(
                    f"requires '{required}', which comes later (order: {', '.join(order)}); "
                    "an environment can only require an earlier one",
                    sub=sub,
                )
            elif required not in order:
                yield from _unknown(
                    definitions,
                    owner=owner,
                    sub=sub,
                    section="environments",
                    name=required,
                    kind="environment",
                )


def _raw(origin: Origin) -> Any:  # noqa: ANN401 - the YAML node as written
    node = origin.document.tree
    for part in origin.path:
        node = node[part]
    return node


def _sources(definitions: Definitions) -> Iterator[Problem]:
    for name, source in definitions.sources.items():
        yield from _unknown(
            definitions,
            owner=("sources", name),
            sub=["registry"],
            section="registries",
            name=source.registry,
            kind="registry",
        )


def _webhooks(definitions: Definitions) -> Iterator[Problem]:
    for name, webhook in definitions.webhooks.items():
        if webhook.registry is not None:
            yield from _unknown(
                definitions,
                owner=("webhooks", name),
                sub=["registry"],
                section="registries",
                name=webhook.registry,
                kind="registry",
            )


def _pipelines(definitions: Definitions) -> Iterator[Problem]:
    for name, pipeline in definitions.pipelines.items():
        owner = ("pipelines", name)
        if pipeline.environment is not None:
            yield from _unknown(
                definitions,
                owner=owner,
                sub=["environment"],
                section="environments",
                name=pipeline.environment,
                kind="environment",
            )
        if pipeline.source is not None:
            yield from _source_reference(definitions, name, pipeline.source)
        for index, trigger in enumerate(pipeline.triggers):
            yield from _trigger(definitions, owner, index, trigger)
        yield from _steps(definitions, owner, pipeline)


def _source_reference(
    definitions: Definitions, name: str, source: models.PipelineSource
) -> Iterator[Problem]:
    owner = ("pipelines", name)
    if source.artifact is not None:
        yield from _unknown(
            definitions,
            owner=owner,
            sub=["source", "artifact"],
            section="sources",
            name=source.artifact,
            kind="source",
        )
    if source.pipeline is not None:
        if source.pipeline == name:
            yield definitions.origins[owner].problem(
                "a pipeline cannot take its image from itself", sub=["source", "pipeline"]
            )
        else:
            yield from _unknown(
                definitions,
                owner=owner,
                sub=["source", "pipeline"],
                section="pipelines",
                name=source.pipeline,
                kind="pipeline",
            )


def _trigger(
    definitions: Definitions, owner: tuple[str, str], index: int, trigger: models.Trigger
) -> Iterator[Problem]:
    base: list[str | int] = ["triggers", index]
    if trigger.registry_event is not None:
        event = trigger.registry_event
        yield from _unknown(
            definitions,
            owner=owner,
            sub=[*base, "registry_event", "source"],
            section="sources",
            name=event.source,
            kind="source",
        )
        if event.webhook is not None:
            yield from _unknown(
                definitions,
                owner=owner,
                sub=[*base, "registry_event", "webhook"],
                section="webhooks",
                name=event.webhook,
                kind="webhook",
            )
    if trigger.poll is not None:
        yield from _unknown(
            definitions,
            owner=owner,
            sub=[*base, "poll", "source"],
            section="sources",
            name=trigger.poll.source,
            kind="source",
        )
    if trigger.pipeline is not None:
        yield from _unknown(
            definitions,
            owner=owner,
            sub=[*base, "pipeline", "name"],
            section="pipelines",
            name=trigger.pipeline.name,
            kind="pipeline",
        )


def _steps(
    definitions: Definitions, owner: tuple[str, str], pipeline: models.Pipeline
) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for index, step in enumerate(pipeline.steps):
        if step.name is not None:
            if step.name in seen:
                yield definitions.origins[owner].problem(
                    f"duplicate step name '{step.name}' (also steps[{seen[step.name]}]); "
                    "give each step its own name",
                    sub=["steps", index, "name"],
                )
            seen.setdefault(step.name, index)
        if isinstance(step, steps.BuildStep):
            yield from _unknown(
                definitions,
                owner=owner,
                sub=["steps", index, "registry"],
                section="registries",
                name=step.registry,
                kind="registry",
            )
        if isinstance(step, steps.DeployStep) and step.deployer == "registry":
            target = step.with_.get("registry")
            if isinstance(target, str):
                yield from _unknown(
                    definitions,
                    owner=owner,
                    sub=["steps", index, "with", "registry"],
                    section="registries",
                    name=target,
                    kind="registry",
                )


def _cycles(definitions: Definitions) -> Iterator[Problem]:
    upstream = {
        name: p.source.pipeline
        for name, p in definitions.pipelines.items()
        if p.source is not None and p.source.pipeline is not None and p.source.pipeline != name
    }
    reported: set[str] = set()
    for start in sorted(upstream):
        chain = [start]
        current = upstream.get(start)
        while current is not None and current not in chain:
            chain.append(current)
            current = upstream.get(current)
        if current is None or current in reported:
            continue
        cycle = chain[chain.index(current) :]
        reported.update(cycle)
        first = min(cycle)
        loop = " -> ".join([*cycle[cycle.index(first) :], *cycle[: cycle.index(first)], first])
        yield definitions.origins[("pipelines", first)].problem(
            f"pipeline sources form a cycle: {loop}; a pipeline's image must come from "
            "a pipeline that does not depend on it",
            sub=["source", "pipeline"],
        )
