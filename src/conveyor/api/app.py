"""The ASGI app, built in one place from explicit lists of routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from conveyor.api import errors as api_errors
from conveyor.api import openapi, resources
from conveyor.core.errors import ConveyorError
from conveyor.core.events import Headers
from conveyor.service import events
from conveyor.service.context import Services
from conveyor.service.inbox_writer import InboxWriter
from conveyor.store.database import check_connection
from conveyor.webhooks import check_size
from conveyor.webhooks.oidc import UnknownSigningKey

log = structlog.get_logger("conveyor.api")

HOOKS_PREFIX = "/hooks/"


class WebhookEndpoint:
    """POST /hooks/{name} as a plain ASGI app: the busiest request skips the request wrappers.

    Reads the body under the cap, verifies and parses it here (no thread hop),
    then stores it through the group-commit writer; the 202 follows the commit
    that stored this delivery's events. Refusals (401/400/404/413) are answered
    by ``api_errors.handle`` like every other error, and write nothing; a failed
    commit answers 503 with Retry-After (nothing of the delivery is stored).
    """

    def __init__(
        self,
        services: Services,
        writer: InboxWriter,
        on_accepted: Callable[[int], None] | None = None,
    ) -> None:
        self._services = services
        self._writer = writer
        self._on_accepted = on_accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As a Starlette route endpoint."""
        await self.serve(scope["path_params"]["name"], scope, receive, send)

    async def serve(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one delivery to endpoint ``name``."""
        try:
            headers = Headers(scope["headers"])
            body = await _read_body(headers, receive)
            if body is None:
                return  # the client went away before sending the whole body
            prepared = await self._prepare(name, headers, body)
        except Exception as error:  # refused: nothing was written
            response = await api_errors.handle(Request(scope), error)
            await response(scope, receive, send)
            return
        try:
            result = await self._writer.write(prepared)
        except Exception as error:  # nothing of this delivery was stored
            log.error("webhook delivery not stored", endpoint=name, error=type(error).__name__)
            response = api_errors.problem(
                503, "not-stored", "the delivery could not be stored; retry later"
            )
            response.headers["Retry-After"] = "5"
            await response(scope, receive, send)
            return
        if result.accepted and self._on_accepted is not None:
            _notify(self._on_accepted, len(result.accepted))
        payload = {
            "accepted": len(result.accepted),
            "events": result.accepted,
            "duplicates": result.duplicates,
        }
        await _send_json(send, 202, payload)

    async def _prepare(self, name: str, headers: Headers, body: bytes) -> events.Prepared:
        """Verify and parse; for a token signed with a key not held yet, refetch the keys once.

        The fetch runs in the key set's own thread; awaiting it keeps the loop
        serving, and concurrent deliveries naming the same new key share it.
        """
        try:
            return events.prepare(self._services, name, headers=headers, body=body)
        except UnknownSigningKey:
            pending = events.refresh_keys(self._services, name)
            if pending is None:  # fetched moments ago: the key is not there
                raise
        await asyncio.wrap_future(pending)
        return events.prepare(self._services, name, headers=headers, body=body)


class ConveyorApp(Starlette):
    """Starlette, with webhook deliveries dispatched before its middleware and router.

    ``POST /hooks/<name>`` is the one request that arrives in bulk (registries
    send one per push); the endpoint answers its own errors, so the exception
    middleware and the route table add nothing to it but time. Anything else,
    including other methods on ``/hooks/...`` (405) and apps mounted under a
    root path, goes through Starlette, where the same endpoint is also routed.
    """

    def __init__(self, *, hooks: WebhookEndpoint, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        self._hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            name = path[len(HOOKS_PREFIX) :] if path.startswith(HOOKS_PREFIX) else ""
            if name and "/" not in name:
                scope["app"] = self
                await self._hooks.serve(name, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _read_body(headers: Headers, receive: Receive) -> bytes | None:
    """The request body, refusing (413) anything over the limit before reading it all."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_size(int(declared))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        check_size(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# Renders as JSONResponse does; built once (json.dumps with options builds one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    encoded = _JSON.encode(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(encoded)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


def _notify(on_accepted: Callable[[int], None], count: int) -> None:
    try:
        on_accepted(count)
    except Exception as error:  # the events are stored; a wake-up hint must not fail the 202
        log.error("on_accepted callback failed", error=type(error).__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# How long /readyz waits for the database before it calls it unavailable.
READY_TIMEOUT = 3.0


class Readiness:
    """``GET /readyz``: can this process do its work now (database reachable, worker alive)?

    For a load balancer or Kubernetes readiness probe. The answer names each
    check and never the reason behind a failure (the URL, a host name): that
    goes to the log. ``/healthz`` stays the liveness answer (the process
    answers HTTP at all).
    """

    def __init__(self, services: Services, worker_alive: Callable[[], bool] | None) -> None:
        self._services = services
        self._worker_alive = worker_alive

    async def answer(self, request: Request) -> Response:
        """The route's endpoint: 200 when every check passes, else 503."""
        checks = {"database": await self._database()}
        if self._worker_alive is not None:
            checks["worker"] = "running" if self._worker_alive() else "stopped"
        ready = checks["database"] == "ok" and checks.get("worker", "running") == "running"
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def _database(self) -> str:
        try:
            await asyncio.wait_for(
                asyncio.to_thread(check_connection, self._services.engine), READY_TIMEOUT
            )
        except TimeoutError:
            log.warning("readiness: the database did not answer", seconds=READY_TIMEOUT)
            return "unavailable"
        except Exception as error:  # DatabaseUnavailable, or a driver error: not ready
            log.warning("readiness: the database is unavailable", error=str(error))
            return "unavailable"
        return "ok"


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document())


def build_app(
    services: Services,
    *,
    on_accepted: Callable[[int], None] | None = None,
    worker_alive: Callable[[], bool] | None = None,
) -> Starlette:
    """The whole HTTP surface of one Conveyor process.

    ``on_accepted(n)`` is called after a webhook delivery's ``n`` new events
    (n > 0) are committed, before its 202 (e.g. to wake the worker); it must be
    cheap and thread-safe, and an exception from it is logged, not raised.
    ``worker_alive()`` tells ``/readyz`` whether the process's worker still runs
    (omitted: the process has none to check).
    """
    writer = InboxWriter(services)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for keys in services.webhook_keys.values():
            keys.request_refresh()  # auth: oidc keys load in the background from the start
        try:
            yield
        finally:  # in-flight requests have finished: store anything still queued
            await asyncio.to_thread(writer.close)

    hooks = WebhookEndpoint(services, writer, on_accepted)
    routes = [
        Route(HOOKS_PREFIX + "{name}", hooks, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", Readiness(services, worker_alive).answer),
        Route("/api/v1/openapi.json", openapi_document),
        *resources.routes(services),
    ]
    return ConveyorApp(
        hooks=hooks,
        routes=routes,
        exception_handlers={ConveyorError: api_errors.handle, Exception: api_errors.handle},
        lifespan=lifespan,
    )
