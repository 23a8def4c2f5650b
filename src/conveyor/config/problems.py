"""Turning pydantic's validation errors into located, readable problems.

Every message says what was wrong, where (file:line:column and the dotted
field path) and what would be valid, with a "did you mean" for near misses.
Values of unknown keys are never echoed: they may be secrets.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from conveyor.config import steps
from conveyor.config.yamlfile import PathPart, YamlDocument, locate
from conveyor.core.errors import Location, Problem

NAME_HELP = (
    "lowercase letters, digits, '.', '_' and '-' (starting and ending with a letter or digit)"
)
_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "float_type": "a number",
}


def describe(value: Any) -> str:  # noqa: ANN401 - any YAML value
    """How a found value is shown: its YAML kind and, for short scalars, the value."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"the string '{value}'" if len(value) <= 60 else "a long string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def format_path(path: Sequence[PathPart]) -> str:
    """('pipelines', 'prod', 'steps', 1, 'type') -> 'pipelines.prod.steps[1].type'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def suggest(value: str, names: Iterable[str]) -> str:
    """' (did you mean 'deploy'?)' when a name is close to a valid one, else ''."""
    close = difflib.get_close_matches(value, list(names), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def problem_at(
    document: YamlDocument, path: Sequence[PathPart], message: str, *, at_key: bool = False
) -> Problem:
    """A problem located at ``path`` in ``document``."""
    line, column = locate(document.tree, path, at_key=at_key) or (None, None)
    return Problem(
        location=Location(file=document.file, line=line, column=column, field=format_path(path)),
        message=message,
    )


def from_validation_error(
    error: ValidationError,
    *,
    model: type[BaseModel],
    document: YamlDocument,
    prefix: Sequence[PathPart],
) -> list[Problem]:
    """One problem per pydantic error, located in the YAML document."""
    return [
        _one(detail, model=model, document=document, prefix=prefix) for detail in error.errors()
    ]


def _clean(loc: Sequence[Any]) -> tuple[list[PathPart], bool]:
    path: list[PathPart] = []
    at_key = False
    for part in loc:
        if part == "[key]":
            at_key = True
        elif isinstance(part, str) and (part.startswith(steps.STEP_TAG) or "[" in part):
            continue
        else:
            path.append(part)
    return path, at_key


def _one(
    detail: ErrorDetails,
    *,
    model: type[BaseModel],
    document: YamlDocument,
    prefix: Sequence[PathPart],
) -> Problem:
    raw_loc = tuple(detail["loc"])
    path, at_key = _clean(raw_loc)
    full = [*prefix, *path]
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    found = detail.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        valid = fields_at(model, raw_loc[:-1]) or []
        message = f"unknown key '{key}'{suggest(key, valid)}"
        if valid:
            message += f"; valid keys here: {', '.join(valid)}"
        return problem_at(document, full, message, at_key=True)
    if kind == "missing":
        field = str(path[-1]) if path else "?"
        return problem_at(document, full[:-1], f"required field '{field}' is missing", at_key=True)
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", "")).removeprefix(steps.STEP_TAG)
        message = steps.unknown_name("step type", tag, steps.STEP_TYPES)
        return problem_at(document, [*full, "type"], message)
    if kind == "union_tag_not_found":
        kinds = ", ".join(sorted(steps.STEP_TYPES))
        return problem_at(document, full, f"a step needs 'type' (one of: {kinds})", at_key=True)
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        hint = suggest(str(found), options) if isinstance(found, str) else ""
        return problem_at(document, full, f"{describe(found)} is not one of {expected}{hint}")
    if kind == "string_pattern_mismatch":
        return problem_at(
            document,
            full,
            f"{describe(found)} is not a valid name; use {_pattern_help(model, raw_loc)}",
            at_key=at_key,
        )
    if kind in _TYPE_NAMES:
        return problem_at(document, full, f"expected {_TYPE_NAMES[kind]}, found {describe(found)}")
    if kind == "greater_than_equal":
        return problem_at(document, full, f"must be at least {ctx.get('ge')}, found {found}")
    if kind == "less_than_equal":
        return problem_at(document, full, f"must be at most {ctx.get('le')}, found {found}")
    if kind == "too_short":
        minimum = ctx.get("min_length")
        message = f"needs at least {minimum} item{'s' if minimum != 1 else ''}, found none"
        return problem_at(document, full, message, at_key=True)
    message = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return problem_at(document, full, message, at_key=at_key)


def _pattern_help(model: type[BaseModel], loc: Sequence[Any]) -> str:
    return (
        "lowercase letters, digits, '.', '_' and '-' (starting and ending with a letter or digit)"
    )


def _unwrap(annotation: Any) -> Any:  # noqa: ANN401 - typing objects
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The keys a mapping at ``loc`` (pydantic's loc, union tags kept) may have."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and part.startswith(steps.STEP_TAG):
            current = steps.STEP_TYPES.get(part.removeprefix(steps.STEP_TAG))
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field(current, part)
            if field is None:
                return None
            current = field
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin is dict and args:
            current = args[1]
        elif origin is list and args:
            current = args[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return None


def _field(model: type[BaseModel], key: Any) -> Any:  # noqa: ANN401
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None
