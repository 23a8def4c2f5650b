"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json.

Each route's entry says the least role it needs; a test checks that every
route of the app is described here and nothing else, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from conveyor import __version__

_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": False,
                }
            }
        },
    }


# (method, path, least role, summary, request body or None)
OPERATIONS: list[tuple[str, str, str, str, dict[str, Any] | None]] = [
    (
        "get",
        "/api/v1/runs",
        "viewer",
        "Recent runs, newest first (?pipeline=&status=&limit=)",
        None,
    ),
    (
        "post",
        "/api/v1/runs",
        "operator",
        "Start a run; its image is fixed now, by digest",
        _body(
            {
                "pipeline": _STRING,
                "tag": _STRING,
                "digest": _STRING,
                "from_run": _INTEGER,
                "parameters": {"type": "object", "additionalProperties": _STRING},
            },
            ["pipeline"],
        ),
    ),
    ("get", "/api/v1/runs/{id}", "viewer", "One run with its steps and approvals", None),
    (
        "post",
        "/api/v1/runs/{id}/approvals",
        "approver",
        "Approve or reject the run's waiting gate as the token's user",
        _body(
            {
                "decision": {"enum": ["approve", "reject"]},
                "comment": _STRING,
                "groups": {"type": "array", "items": _STRING},
            },
            ["decision"],
        ),
    ),
    ("post", "/api/v1/runs/{id}/cancel", "operator", "Cancel a run that has not finished", None),
    (
        "get",
        "/api/v1/runs/{id}/logs",
        "viewer",
        "Log lines after ?after=N, and the next position",
        None,
    ),
    ("get", "/api/v1/environments", "viewer", "Every environment and what it runs now", None),
    ("get", "/api/v1/environments/{name}", "viewer", "What an environment runs now", None),
    (
        "get",
        "/api/v1/environments/{name}/history",
        "viewer",
        "An environment's deployments, newest first",
        None,
    ),
    (
        "post",
        "/api/v1/environments/{name}/rollback",
        "operator",
        "Redeploy an earlier digest through the same gates",
        _body({"to_run": _INTEGER, "to_digest": _STRING}, []),
    ),
    (
        "post",
        "/api/v1/bad-digests",
        "operator",
        "Block a digest from every environment",
        _body({"digest": _STRING, "reason": _STRING}, ["digest", "reason"]),
    ),
    (
        "get",
        "/api/v1/events",
        "viewer",
        "The event inbox with each trigger's outcome, newest first "
        "(?status=pending|processed|duplicate|failed&endpoint=&limit=, 1-1000)",
        None,
    ),
    (
        "get",
        "/api/v1/events/{id}",
        "viewer",
        "One event and why each trigger did or did not fire",
        None,
    ),
    ("post", "/api/v1/events/{id}/replay", "operator", "Match an event's triggers again", None),
    (
        "get",
        "/api/v1/audit",
        "admin",
        "The audit log, newest first: every write with its identity (?limit=, 1-1000)",
        None,
    ),
]

_PROBLEM = {
    "description": "application/problem+json naming the field",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, role, summary, body in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": summary,
            "description": f"Needs a token with role {role} or higher.",
            "security": [{"bearer": []}],
            "x-conveyor-role": role,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": _STRING}
                for name in ("id", "name")
                if f"{{{name}}}" in path
            ],
            "responses": {
                "200" if method == "get" else "201": {"description": "the resource as JSON"},
                "400": _PROBLEM,
                "401": _PROBLEM,
                "403": _PROBLEM,
                "404": _PROBLEM,
                "409": _PROBLEM,
            },
        }
        if body is not None:
            operation["requestBody"] = body
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Conveyor API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": _STRING,
                        "title": _STRING,
                        "status": _INTEGER,
                        "detail": _STRING,
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"field": _STRING, "message": _STRING},
                            },
                        },
                    },
                }
            },
        },
    }
