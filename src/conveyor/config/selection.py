"""The YAML syntax of version filters and policies, validated by the core itself.

The same models are embedded in artifact sources under ``filter:`` and
``policy:``; ``conveyor select --rule`` reads a file holding just those two keys.
Every validator calls the core, so an invalid regex or range is reported
with the core's own message, at the field's file:line:column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from conveyor.config.strict import Strict
from conveyor.core import semver, versions
from conveyor.core.errors import InvalidDefinition, InvalidInput, Location, Problem

T = TypeVar("T")


def _core(check: Callable[[], T], *, field: str = "") -> T:
    """Run a core check; its InvalidInput becomes a pydantic error with the same text.

    The location already names the field, so a leading field name is not repeated.
    """
    try:
        return check()
    except InvalidInput as exc:
        message = str(exc)
        for prefix in (f"{field}: ", f"{field} "):
            if field and message.startswith(prefix):
                message = message[len(prefix) :]
                break
        raise PydanticCustomError("conveyor", "{message}", {"message": message}) from None


class FilterConfig(Strict):
    """``filter:``: which tags are candidates, and the key the policy orders by."""

    glob: str | None = Field(None, description="Whole-tag glob: * ? [...] (not with pattern).")
    pattern: str | None = Field(None, description="RE2 regex, matched anywhere unless anchored.")
    extract: str | None = Field(
        None, description="Key template: $name, ${name}, $1 (pattern only)."
    )
    exclude: tuple[str, ...] = Field((), description="Globs; a matching tag is dropped.")
    exclude_pattern: str | None = Field(None, description="RE2 regex; a matching tag is dropped.")
    exclude_signatures: StrictBool = Field(True, description="Drop *.sig, *.att, *.sbom, sha256-*.")

    @field_validator("glob")
    @classmethod
    def _glob(cls, value: str | None) -> str | None:
        if value is not None:
            _core(lambda: versions.check_glob(value, field="filter.glob"), field="filter.glob")
        return value

    @field_validator("pattern", "exclude_pattern")
    @classmethod
    def _pattern(cls, value: str | None, info: ValidationInfo) -> str | None:
        field = f"filter.{info.field_name}"
        if value is not None:
            _core(lambda: versions.check_pattern(value, field=field), field=field)
        return value

    @field_validator("extract")
    @classmethod
    def _extract(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern = info.data.get("pattern")
        if value is not None and pattern is not None:
            field = "filter.extract"
            _core(lambda: versions.TagFilter(pattern=pattern, extract=value), field=field)
        return value

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for glob in value:
            field = "filter.exclude"
            _core(lambda: versions.check_glob(glob, field=field), field=field)  # noqa: B023
        return value

    @model_validator(mode="after")
    def _whole(self) -> FilterConfig:
        _core(self.to_core, field="filter")
        return self

    def to_core(self) -> versions.TagFilter:
        """The core filter (raises InvalidVersionPolicy; validation already ran it once)."""
        return versions.TagFilter(
            glob=self.glob,
            pattern=self.pattern,
            extract=self.extract,
            exclude=self.exclude,
            exclude_pattern=self.exclude_pattern,
            exclude_signatures=self.exclude_signatures,
        )


class SemverConfig(Strict):
    """``semver: {range: ...}``: the greatest version in a Masterminds/semver range."""

    range: str | None = Field(None, description="Masterminds/semver v3 range; none: any stable.")

    @field_validator("range")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        if value is not None:
            _core(lambda: semver.parse_range(value))
        return value


class OrderConfig(Strict):
    """``alphabetical`` / ``numerical``: ``order: asc`` (greatest wins) or ``desc``."""

    order: Literal["asc", "desc"] = Field("asc", description="asc: greatest wins; desc: smallest.")


class NewestConfig(Strict):
    """``newest: {max_candidates: N}``: the most recently created image."""

    max_candidates: StrictInt = Field(
        versions.DEFAULT_MAX_CANDIDATES, ge=1, description="Image configs read at most."
    )


class DigestConfig(Strict):
    """``digest: {tag: NAME}``: follow a mutable tag; a new digest is a new version."""

    tag: str = Field(min_length=1, description="The tag to follow, e.g. stable.")


POLICY_KINDS = ("semver", "alphabetical", "numerical", "newest", "digest")


class PolicyConfig(Strict):
    """``policy:``: exactly one of semver, alphabetical, numerical, newest, digest."""

    semver: SemverConfig | None = None
    alphabetical: OrderConfig | None = None
    numerical: OrderConfig | None = None
    newest: NewestConfig | None = None
    digest: DigestConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: Any) -> Any:  # noqa: ANN401 - raw YAML
        # `newest:` with nothing after it reads as null; it means `newest: {}`.
        if isinstance(data, Mapping):
            return {k: ({} if v is None and k in POLICY_KINDS else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> PolicyConfig:
        given = [kind for kind in POLICY_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise PydanticCustomError(
                "conveyor",
                "{message}",
                {
                    "message": f"give exactly one policy of {', '.join(POLICY_KINDS)} "
                    f"(found: {found}); write e.g. semver: {{range: '>=1.0.0 <2.0.0'}}"
                },
            )
        return self

    def to_core(self) -> versions.VersionPolicy:
        """The core policy."""
        if self.semver is not None:
            return versions.SemverPolicy(range=self.semver.range)
        if self.alphabetical is not None:
            return versions.AlphabeticalPolicy(order=versions.Order(self.alphabetical.order))
        if self.numerical is not None:
            return versions.NumericalPolicy(order=versions.Order(self.numerical.order))
        if self.newest is not None:
            return versions.NewestPolicy(max_candidates=self.newest.max_candidates)
        if self.digest is not None:
            return versions.DigestPolicy(tag=self.digest.tag)
        raise AssertionError("validated: exactly one policy")  # pragma: no cover


class SelectionRule(Strict):
    """A rule file for ``conveyor select``: ``filter:`` (optional) and ``policy:``."""

    filter: FilterConfig = Field(default_factory=lambda: FilterConfig())
    policy: PolicyConfig


# --- loading with locations ------------------------------------------------------


def load_rule(path: Path) -> SelectionRule:
    """Read a rule file; raises InvalidDefinition with file:line:column: field for each problem."""
    text = path.read_text(encoding="utf-8")
    return parse_rule(text, file=str(path))


def parse_rule(text: str, *, file: str) -> SelectionRule:
    """Parse rule YAML; raises InvalidDefinition naming every problem's place."""
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise InvalidDefinition(
            [
                Problem(
                    location=Location(file=file, line=line, column=column),
                    message=f"not valid YAML: {exc.problem}",
                )
            ]
        ) from None
    if not isinstance(data, Mapping):
        raise InvalidDefinition(
            [
                Problem(
                    location=Location(file=file, line=1, column=1),
                    message="a rule is a mapping with filter: and policy:; "
                    "write e.g. policy: {semver: {range: '>=1.0.0'}}",
                )
            ]
        )
    try:
        return SelectionRule.model_validate(data)
    except ValidationError as exc:
        raise InvalidDefinition(problems(exc, data, file=file)) from None


def problems(error: ValidationError, data: object, *, file: str) -> list[Problem]:
    """Turn pydantic's errors into located problems (line and column from ruamel's marks)."""
    found: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        line, column = _position(data, loc, key=item["type"] == "extra_forbidden")
        found.append(
            Problem(
                location=Location(
                    file=file, line=line, column=column, field=".".join(str(p) for p in loc)
                ),
                message=_message(item, data, loc),
            )
        )
    return found


def _message(item: Mapping[str, Any], data: object, loc: tuple[Any, ...]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = ", ".join(parent.model_fields) if parent is not None else ""
        return f"unknown key '{loc[-1]}'" + (f"; valid keys here: {valid}" if valid else "")
    if kind == "missing":
        return "required"
    return str(item["msg"])


def _model_at(loc: Sequence[Any]) -> type[Strict] | None:
    model: type[Strict] = SelectionRule
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, Strict)]
        if not nested:
            return None
        model = nested[0]
    return model


def _position(data: object, loc: Sequence[Any], *, key: bool) -> tuple[int | None, int | None]:
    """1-based line and column of the deepest part of ``loc`` present in the YAML."""
    node = data
    line: int | None = 1
    column: int | None = 1
    for index, part in enumerate(loc):
        lc = getattr(node, "lc", None)
        if isinstance(node, Mapping) and part in node and lc is not None:
            last = index == len(loc) - 1
            row, col = lc.key(part) if (key and last) else lc.value(part)
            line, column = row + 1, col + 1
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node) and lc:
            row, col = lc.item(part)
            line, column = row + 1, col + 1
            node = node[part]
        else:
            break
    return line, column
