"""Placeholder models for `filter:` and `policy:` (replaced by the version-selection work)."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from conveyor.config.fields import Regex
from conveyor.config.strict import Strict


class FilterModel(Strict):
    glob: str | None = None
    pattern: Regex | None = None
    extract: str | None = None
    exclude: tuple[str, ...] = ()
    exclude_pattern: Regex | None = None
    exclude_signatures: bool = True


class PolicyModel(Strict):
    semver: dict[str, Any] | None = None
    alphabetical: dict[str, Any] | None = None
    numerical: dict[str, Any] | None = None
    newest: dict[str, Any] | None = None
    digest: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> PolicyModel:
        given = [n for n in type(self).model_fields if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one policy")
        return self
