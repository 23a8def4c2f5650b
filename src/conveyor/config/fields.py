"""Field types shared by the config models: checked strings with their own messages."""

from __future__ import annotations

from typing import Annotated, Any

import re2
from pydantic import AfterValidator, BeforeValidator, ByteSize, Field, TypeAdapter, WithJsonSchema
from pydantic import ValidationError as PydanticValidationError

from conveyor.core import durations, templates

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def check_regex(value: str) -> str:
    """A regular expression in RE2 syntax (what Go, and so Flux, accept)."""
    try:
        re2.compile(value, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"'{value}' is not a valid regular expression ({reason}); RE2 syntax is used, "
            "which has no lookarounds or backreferences"
        ) from None
    return value


def check_duration(value: str) -> str:
    durations.parse_duration(value)
    return value


def check_template(value: str) -> str:
    try:
        templates.placeholders(value)
    except templates.TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


def check_env_name(value: str) -> str:
    if (
        not value
        or not (value[0].isalpha() or value[0] == "_")
        or not value.replace("_", "a").isalnum()
    ):
        raise ValueError(
            f"'{value}' is not an environment variable name; use letters, digits and '_'"
        )
    return value


# A registry upload chunk: below 64 KiB the requests cost more than the bytes;
# above 5 GiB no object store (S3's single-PUT limit) takes one piece.
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 5 * 1024**3
_BYTE_SIZE = TypeAdapter(ByteSize)


def format_size(value: int) -> str:
    """``16MiB`` for 16777216, else the byte count."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def check_chunk_size(value: Any) -> int:  # noqa: ANN401 - raw YAML
    """A byte count, or a size with a unit (``16MiB``, ``512KiB``, ``20MB``), within bounds."""
    bounds = f"between {format_size(MIN_CHUNK_SIZE)} and {format_size(MAX_CHUNK_SIZE)}"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size such as 16MiB or a number of bytes ({bounds})")
    try:
        size = int(_BYTE_SIZE.validate_python(value))
    except PydanticValidationError:
        raise ValueError(
            f"'{value}' is not a size; write a number of bytes or a number with a unit "
            f"(KiB, MiB, GiB, or KB, MB, GB), e.g. 16MiB; {bounds}"
        ) from None
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
        raise ValueError(f"{value} ({size} bytes) is out of range; the chunk size is {bounds}")
    return size


ChunkSize = Annotated[
    int,
    BeforeValidator(check_chunk_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_CHUNK_SIZE, "maximum": MAX_CHUNK_SIZE},
                {"type": "string", "pattern": r"^\s*\d*\.?\d+\s*[A-Za-z]*\s*$"},
            ],
            "description": "Bytes, or a size with a unit such as 16MiB (64KiB to 5GiB)",
        }
    ),
]
Regex = Annotated[str, AfterValidator(check_regex), Field(description="RE2 regular expression")]
Duration = Annotated[
    str, AfterValidator(check_duration), Field(description="Duration such as 30s, 5m, 1h30m")
]
Template = Annotated[
    str, AfterValidator(check_template), Field(description="Text with ${PARAMETER} placeholders")
]
EnvName = Annotated[
    str, AfterValidator(check_env_name), Field(description="Name of an environment variable")
]
