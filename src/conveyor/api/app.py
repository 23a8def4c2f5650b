"""The ASGI app, built in one place from explicit lists of routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.api import errors as api_errors
from conveyor.api import openapi, resources
from conveyor.core.errors import ConveyorError
from conveyor.core.events import Headers
from conveyor.service import events
from conveyor.service.context import Services
from conveyor.service.inbox_writer import InboxWriter
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
    services: Services,
    writer: InboxWriter,
    on_accepted: Callable[[int], None] | None = None,
) -> Callable[[Request], Any]:
    """POST /hooks/{name}: verify and parse here, store through the group-commit writer.

    The 202 follows the commit that stored this delivery's events; a failed
    commit answers 503 (nothing of the delivery is stored; senders retry).
    """

    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        body = await read_capped(request)
        headers = Headers(request.headers.raw)
        # Verification and parsing are pure CPU: done here, without a thread hop.
        prepared = events.prepare(services, name, headers=headers, body=body)
        try:
            result = await asyncio.wrap_future(writer.submit(prepared))
        except Exception as error:  # nothing of this delivery was stored
            log.error("webhook delivery not stored", endpoint=name, error=type(error).__name__)
            response = api_errors.problem(
                503, "not-stored", "the delivery could not be stored; retry later"
            )
            response.headers["Retry-After"] = "5"
            return response
        if result.accepted and on_accepted is not None:
            _notify(on_accepted, len(result.accepted))
        return JSONResponse(
            {
                "accepted": len(result.accepted),
                "events": result.accepted,
                "duplicates": result.duplicates,
            },
            status_code=202,
        )

    return receive


def _notify(on_accepted: Callable[[int], None], count: int) -> None:
    try:
        on_accepted(count)
    except Exception as error:  # the events are stored; a wake-up hint must not fail the 202
        log.error("on_accepted callback failed", error=type(error).__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document())


def build_app(
    services: Services, *, on_accepted: Callable[[int], None] | None = None
) -> Starlette:
    """The whole HTTP surface of one Conveyor process.

    ``on_accepted(n)`` is called after a webhook delivery's ``n`` new events
    (n > 0) are committed, before its 202 (e.g. to wake the worker); it must be
    cheap and thread-safe, and an exception from it is logged, not raised.
    """
    writer = InboxWriter(services)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # in-flight requests have finished: store anything still queued
            await asyncio.to_thread(writer.close)

    routes = [
        Route("/hooks/{name}", webhook_endpoint(services, writer, on_accepted), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/api/v1/openapi.json", openapi_document),
        *resources.routes(services),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ConveyorError: api_errors.handle, Exception: api_errors.handle},
        lifespan=lifespan,
    )
