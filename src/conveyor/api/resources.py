"""REST resources under /api/v1: runs, approvals, environments, events, the audit log.

Handlers authenticate, parse the request into plain values, call one
service use case and render its result. Rules and SQL live elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.core import gates
from conveyor.core.errors import InvalidInput, Location, Problem
from conveyor.service import audit, environments, events, queries, runs, tokens
from conveyor.service.context import Services
from conveyor.service.tokens import Role

Handler = Callable[[Request], Any]


def _json(data: Any, status: int = 200) -> JSONResponse:  # noqa: ANN401
    return JSONResponse(json.loads(json.dumps(data, default=str)), status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:  # noqa: ANN401
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput(
                [Problem(location=Location(field=name), message=f"'{name}' is required")]
            )
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidInput(
            [
                Problem(
                    location=Location(field=name),
                    message=f"'{name}' must be {kind.__name__}, found {type(value).__name__}",
                )
            ]
        )
    return value


def _endpoint(services: Services, role: Role, work: Callable[..., Any]) -> Handler:
    async def handle(request: Request) -> Response:
        identity = await run_in_threadpool(
            tokens.authenticate, services, request.headers.get("authorization")
        )
        tokens.require(identity, role)
        body = await _body(request) if request.method in ("POST", "PUT") else {}
        result = await run_in_threadpool(work, identity, request, body)
        if isinstance(result, Response):
            return result
        return _json(result, 201 if request.method == "POST" else 200)

    return handle


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit():
        message = "'limit' must be a positive integer"
        raise InvalidInput([Problem(location=Location(field="limit"), message=message)])
    return int(raw)


def routes(services: Services) -> list[Route]:
    """Every /api/v1 route with the least role it needs."""

    def list_runs(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        params = request.query_params
        return queries.list_runs(
            services,
            pipeline=params.get("pipeline"),
            status=params.get("status"),
            limit=_limit(request, 20),
        )

    def start(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        parameters = _field(body, "parameters", dict) or {}
        request_ = runs.RunRequest(
            pipeline=_field(body, "pipeline", str, required=True),
            tag=_field(body, "tag", str),
            digest=_field(body, "digest", str),
            from_run=_field(body, "from_run", int),
            parameters={str(k): str(v) for k, v in parameters.items()},
            user=identity.user,
        )
        return queries.show_run(services, runs.start_run(services, request_))

    def show(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return queries.show_run(services, _id(request))

    def decide(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        decision = _field(body, "decision", str, required=True)
        if decision not in ("approve", "reject"):
            raise InvalidInput(
                [
                    Problem(
                        location=Location(field="decision"),
                        message="'decision' must be 'approve' or 'reject'",
                    )
                ]
            )
        approver = gates.Approver(
            user=identity.user, groups=frozenset(_field(body, "groups", list) or [])
        )
        runs.decide(
            services,
            _id(request),
            approver=approver,
            approved=decision == "approve",
            comment=_field(body, "comment", str) or "",
        )
        return queries.show_run(services, _id(request))

    def cancel(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        runs.cancel(services, _id(request), user=identity.user)
        return queries.show_run(services, _id(request))

    def logs(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            message = f"'after' must be a log position (a whole number, 0 or more), found '{after}'"
            raise InvalidInput([Problem(location=Location(field="after"), message=message)])
        lines, position = queries.read_logs(services, _id(request), after=int(after))
        return {"lines": lines, "next": position}

    def list_envs(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return queries.list_environments(services)

    def show_env(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return queries.show_environment(services, request.path_params["name"])

    def env_history(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return queries.environment_history(services, request.path_params["name"])

    def rollback(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        run_id = runs.rollback(
            services,
            request.path_params["name"],
            to_run=_field(body, "to_run", int),
            to_digest=_field(body, "to_digest", str),
            user=identity.user,
        )
        return queries.show_run(services, run_id)

    def mark_bad(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        environments.mark_bad(
            services,
            _field(body, "digest", str, required=True),
            reason=_field(body, "reason", str, required=True),
            user=identity.user,
        )
        return {"digest": body["digest"], "marked_bad": True}

    def list_events(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        params = request.query_params
        return events.list_events(
            services,
            limit=_limit(request, 50),
            status=params.get("status"),
            endpoint=params.get("endpoint"),
        )

    def show_event(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return events.show_event(services, _id(request))

    def replay(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return events.replay(services, _id(request), user=identity.user)

    def list_audit(identity: tokens.Identity, request: Request, body: dict[str, Any]) -> Any:  # noqa: ANN401
        return audit.list_entries(services, limit=_limit(request, 50))

    table: list[tuple[str, str, Role, Callable[..., Any]]] = [
        ("/api/v1/runs", "GET", Role.VIEWER, list_runs),
        ("/api/v1/runs", "POST", Role.OPERATOR, start),
        ("/api/v1/runs/{id}", "GET", Role.VIEWER, show),
        ("/api/v1/runs/{id}/approvals", "POST", Role.APPROVER, decide),
        ("/api/v1/runs/{id}/cancel", "POST", Role.OPERATOR, cancel),
        ("/api/v1/runs/{id}/logs", "GET", Role.VIEWER, logs),
        ("/api/v1/environments", "GET", Role.VIEWER, list_envs),
        ("/api/v1/environments/{name}", "GET", Role.VIEWER, show_env),
        ("/api/v1/environments/{name}/history", "GET", Role.VIEWER, env_history),
        ("/api/v1/environments/{name}/rollback", "POST", Role.OPERATOR, rollback),
        ("/api/v1/bad-digests", "POST", Role.OPERATOR, mark_bad),
        ("/api/v1/events", "GET", Role.VIEWER, list_events),
        ("/api/v1/events/{id}", "GET", Role.VIEWER, show_event),
        ("/api/v1/events/{id}/replay", "POST", Role.OPERATOR, replay),
        ("/api/v1/audit", "GET", Role.ADMIN, list_audit),
    ]
    return [
        Route(path, _endpoint(services, role, work), methods=[method], name=f"{method} {path}")
        for path, method, role, work in table
    ]


def _id(request: Request) -> int:
    raw = request.path_params["id"]
    if not str(raw).isdigit():
        raise InvalidInput(
            [Problem(location=Location(field="id"), message=f"'{raw}' is not a numeric id")]
        )
    return int(raw)
