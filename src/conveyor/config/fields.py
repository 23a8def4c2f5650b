"""Field types shared by the config models: checked strings with their own messages."""

from __future__ import annotations

from typing import Annotated

import re2
from pydantic import AfterValidator, Field

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
