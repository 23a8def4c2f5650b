"""Loading definitions: files → located problems or one merged ``Definitions``.

Each section entry (a registry, an environment, a source, a pipeline, a
webhook) is validated on its own, so one broken entry does not hide the
problems of the others; cross-references are then checked across all files.
All problems are reported at once, sorted by file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from conveyor.config import models, problems, references, steps
from conveyor.config.yamlfile import YamlDocument, load_file, to_plain
from conveyor.core.errors import InvalidDefinition, Location, Problem

CONFIG_FILE = "conveyor.yaml"
CONFIG_DIR = "conveyor.d"
MAPPING_SECTIONS: dict[str, type[BaseModel]] = {
    "registries": models.Registry,
    "sources": models.ArtifactSource,
    "pipelines": models.Pipeline,
    "webhooks": models.Webhook,
}
SECTIONS = ("version", "registries", "environments", "sources", "pipelines", "webhooks")
_NAME = TypeAdapter(models.Name)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition was written: the document and the path inside it."""

    document: YamlDocument
    path: tuple[str | int, ...]

    def problem(
        self, message: str, *, sub: Sequence[str | int] = (), at_key: bool = False
    ) -> Problem:
        return problems.problem_at(self.document, [*self.path, *sub], message, at_key=at_key)


@dataclass(slots=True)
class Definitions:
    """Everything a configuration declares, merged over its files, with origins."""

    files: list[str] = field(default_factory=list)
    registries: dict[str, models.Registry] = field(default_factory=dict)
    environments: list[models.Environment] = field(default_factory=list)
    sources: dict[str, models.ArtifactSource] = field(default_factory=dict)
    pipelines: dict[str, models.Pipeline] = field(default_factory=dict)
    webhooks: dict[str, models.Webhook] = field(default_factory=dict)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    # Names that were declared but failed validation: references to them are not "unknown".
    broken: set[tuple[str, str]] = field(default_factory=set)
    base_dir: Path = Path()

    def environment(self, name: str) -> models.Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    def registry_for_host(self, host: str) -> str | None:
        """The configured registry whose public or internal address is ``host``."""
        for name, definition in self.registries.items():
            if host in (definition.host, definition.internal_host):
                return name
        return None

    def names(self, section: str) -> set[str]:
        if section == "environments":
            declared = {e.name for e in self.environments}
        else:
            declared = set(getattr(self, section))
        return declared | {n for s, n in self.broken if s == section}


def find_files(path: Path | None) -> list[Path]:
    """The YAML files a --config value means (default ./conveyor.yaml, else ./conveyor.d/)."""
    if path is None:
        if Path(CONFIG_FILE).is_file():
            return [Path(CONFIG_FILE)]
        path = Path(".")
    if path.is_file():
        return [path]
    if not path.exists():
        raise InvalidDefinition(
            [Problem(location=Location(file=str(path)), message="no such file or directory")]
        )
    files: list[Path] = []
    if (path / CONFIG_FILE).is_file():
        files.append(path / CONFIG_FILE)
    if (path / CONFIG_DIR).is_dir():
        files.extend(_yaml_in(path / CONFIG_DIR))
    if not files:
        files = _yaml_in(path)
    if not files:
        raise InvalidDefinition(
            [
                Problem(
                    location=Location(file=str(path)),
                    message=f"no configuration found; expected {CONFIG_FILE}, {CONFIG_DIR}/*.yaml "
                    "or *.yaml files in this directory (or pass --config PATH)",
                )
            ]
        )
    return files


def _yaml_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load(path: Path | None) -> Definitions:
    """Load and check a configuration; raises InvalidDefinition with every problem found."""
    files = find_files(path)
    definitions = Definitions(base_dir=(files[0].parent if files else Path()))
    found: list[Problem] = []
    for file in files:
        document, syntax = load_file(file)
        definitions.files.append(str(file))
        found.extend(syntax)
        if document is not None:
            found.extend(_merge(document, definitions))
    # References are checked among whatever loaded, so one run shows as much as possible.
    found.extend(references.check(definitions))
    if found:
        raise InvalidDefinition(sorted(found, key=_order))
    return definitions


def _order(problem: Problem) -> tuple[str, int, int]:
    location = problem.location
    return (location.file or "", location.line or 0, location.column or 0)


def _merge(document: YamlDocument, into: Definitions) -> list[Problem]:
    tree = document.tree
    if tree is None:
        return []
    if not isinstance(tree, dict):
        return [
            problems.problem_at(
                document,
                [],
                f"expected a mapping of sections ({', '.join(SECTIONS)}), "
                f"found {problems.describe(to_plain(tree))}",
            )
        ]
    found: list[Problem] = []
    for key in tree:
        if key not in SECTIONS:
            message = f"unknown section '{key}'{problems.suggest(str(key), SECTIONS)}; "
            found.append(
                problems.problem_at(
                    document, [key], message + f"valid sections: {', '.join(SECTIONS)}", at_key=True
                )
            )
    if "version" in tree and to_plain(tree["version"]) != 1:
        found.append(
            problems.problem_at(
                document,
                ["version"],
                f"found {problems.describe(to_plain(tree['version']))}; "
                "the only config version is 1",
            )
        )
    for section, model in MAPPING_SECTIONS.items():
        if section in tree:
            found.extend(_merge_mapping(document, section, model, into))
    if "environments" in tree:
        found.extend(_merge_environments(document, into))
    return found


def _merge_mapping(
    document: YamlDocument, section: str, model: type[BaseModel], into: Definitions
) -> list[Problem]:
    raw = document.tree[section]
    if raw is None:
        return []
    if not isinstance(raw, dict):
        found = problems.describe(to_plain(raw))
        return [
            problems.problem_at(
                document, [section], f"expected a mapping of names to definitions, found {found}"
            )
        ]
    target: dict[str, Any] = getattr(into, section)
    found_problems: list[Problem] = []
    for name, body in raw.items():
        name = str(name)
        origin = Origin(document, (section, name))
        name_problem = _check_name(origin, name)
        if name_problem:
            found_problems.append(name_problem)
            continue
        previous = into.origins.get((section, name))
        if previous is not None:
            found_problems.append(_duplicate(origin, section, name, previous))
            continue
        into.origins[(section, name)] = origin
        entry_problems = _validate(model, body, origin)
        if section == "pipelines":
            entry_problems.extend(_check_deployers(body, origin))
        if entry_problems:
            found_problems.extend(entry_problems)
            into.broken.add((section, name))
            continue
        target[name] = model.model_validate(to_plain(body))
    return found_problems


def _merge_environments(document: YamlDocument, into: Definitions) -> list[Problem]:
    raw = document.tree["environments"]
    if raw is None:
        return []
    if not isinstance(raw, list):
        found = problems.describe(to_plain(raw))
        return [
            problems.problem_at(
                document,
                ["environments"],
                f"expected an ordered list of environments, found {found}",
            )
        ]
    found_problems: list[Problem] = []
    for index, body in enumerate(raw):
        origin = Origin(document, ("environments", index))
        entry_problems = _validate(models.Environment, body, origin)
        name = body.get("name") if isinstance(body, dict) else None
        if entry_problems:
            found_problems.extend(entry_problems)
            if isinstance(name, str):
                into.broken.add(("environments", name))
            continue
        environment = models.Environment.model_validate(to_plain(body))
        previous = into.origins.get(("environments", environment.name))
        if previous is not None:
            found_problems.append(
                _duplicate(origin, "environments", environment.name, previous, sub=["name"])
            )
            continue
        into.origins[("environments", environment.name)] = origin
        into.environments.append(environment)
    return found_problems


def _validate(model: type[BaseModel], body: Any, origin: Origin) -> list[Problem]:  # noqa: ANN401
    try:
        model.model_validate(to_plain(body))
    except ValidationError as exc:
        return problems.from_validation_error(
            exc, model=model, document=origin.document, prefix=origin.path
        )
    return []


def _check_name(origin: Origin, name: str) -> Problem | None:
    try:
        _NAME.validate_python(name)
    except ValidationError:
        return origin.problem(
            f"'{name}' is not a valid name; use {problems.NAME_HELP}", at_key=True
        )
    return None


def _duplicate(
    origin: Origin, section: str, name: str, previous: Origin, *, sub: Sequence[str] = ()
) -> Problem:
    first = previous.problem("").location
    return origin.problem(
        f"duplicate name '{name}' in {section}; first defined at {first.file}:{first.line}",
        sub=sub,
        at_key=not sub,
    )


def _check_deployers(body: Any, origin: Origin) -> list[Problem]:  # noqa: ANN401
    """Validate each deploy step's `with:` block against its deployer's model."""
    if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
        return []
    found: list[Problem] = []
    for index, step in enumerate(body["steps"]):
        if not isinstance(step, dict) or step.get("type") != "deploy":
            continue
        model = steps.DEPLOYERS.get(step.get("deployer"))  # type: ignore[arg-type]
        if model is None:
            continue
        block = step.get("with", {})
        sub_origin = Origin(origin.document, (*origin.path, "steps", index, "with"))
        if block is not None and not isinstance(block, dict):
            found.append(
                sub_origin.problem(
                    f"expected a mapping, found {problems.describe(to_plain(block))}"
                )
            )
            continue
        found.extend(_validate(model, block or {}, sub_origin))
    return found
