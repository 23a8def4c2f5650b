"""The JSON Schema of a config file, for editors (yaml-language-server and friends)."""

from __future__ import annotations

from typing import Any

from conveyor.config import models, steps

SCHEMA_ID = "https://conveyor.dev/schemas/config-v1.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one conveyor.yaml file."""
    schema = models.ConfigFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "Conveyor configuration"
    definitions = schema.setdefault("$defs", {})
    for name, model in steps.DEPLOYERS.items():
        definitions[f"Deployer_{name}"] = model.model_json_schema(by_alias=True)
    return schema
