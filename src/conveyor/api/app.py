"""The ASGI app, built in one place from explicit lists of routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.api import errors as api_errors
from conveyor.api import openapi, resources
from conveyor.core.errors import ConveyorError
from conveyor.core.events import Headers
from conveyor.service import events
from conveyor.service.context import Services
from conveyor.webhooks import MAX_BODY_BYTES, check_size

log = structlog.get_logger("conveyor.api")


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing (413) anything over the limit before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_size(int(declared), limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        check_size(size, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_endpoint(
    services: Services, on_accepted: Callable[[int], None] | None = None
) -> Callable[[Request], Any]:
    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        body = await read_capped(request)
        headers = Headers(request.headers.items())
        result = await run_in_threadpool(events.ingest, services, name, headers=headers, body=body)
        if on_accepted is not None and result.accepted:
            # Committed already: the listener (the worker's wake-up) must not fail the answer.
            try:
                on_accepted(len(result.accepted))
            except Exception:
                log.exception("on_accepted listener failed")
        return JSONResponse(
            {
                "accepted": len(result.accepted),
                "events": result.accepted,
                "duplicates": result.duplicates,
            },
            status_code=202,
        )

    return receive


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document())


def build_app(services: Services, *, on_accepted: Callable[[int], None] | None = None) -> Starlette:
    """The whole HTTP surface of one Conveyor process.

    ``on_accepted(n)`` is called after a delivery's ``n`` new events are
    committed to the inbox, before the 202 (the server wakes its worker with
    it); it must be cheap and thread-safe, and an error in it is only logged.
    """
    routes = [
        Route("/healthz", healthz),
        Route("/api/v1/openapi.json", openapi_document),
        Route("/hooks/{name}", webhook_endpoint(services, on_accepted), methods=["POST"]),
        *resources.routes(services),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ConveyorError: api_errors.handle, Exception: api_errors.handle},
    )
