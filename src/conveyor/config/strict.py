"""The base of every config model: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config model that rejects unknown keys and cannot be changed after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
