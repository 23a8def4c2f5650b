"""One table from Conveyor errors to HTTP statuses and stable codes (application/problem+json)."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from conveyor.core import errors

log = structlog.get_logger("conveyor.api")

# Most specific first.
STATUS: list[tuple[type[errors.ConveyorError], int, str]] = [
    (errors.InvalidInput, 400, "invalid-input"),
    (errors.NotFound, 404, "not-found"),
    (errors.Conflict, 409, "conflict"),
    (errors.PromotionRefused, 409, "promotion-refused"),
    (errors.StepFailed, 409, "step-failed"),
    (errors.IntegrationError, 502, "integration-error"),
]


def problem(status: int, code: str, message: str, *, field: str = "") -> JSONResponse:
    """An application/problem+json response naming the field."""
    return JSONResponse(
        {
            "type": f"https://conveyor.dev/problems/{code}",
            "title": code,
            "status": status,
            "detail": message,
            "errors": [{"field": field, "message": message}],
        },
        status_code=status,
        media_type="application/problem+json",
    )


async def handle(request: Request, exc: Exception) -> JSONResponse:
    """Map a ConveyorError to its response; anything else is a 500 without internals."""
    if isinstance(exc, errors.WebhookRejected | errors.AccessDenied):
        log.info("request refused", path=request.url.path, status=exc.status, reason=str(exc))
        return problem(exc.status, "refused", str(exc))
    if isinstance(exc, errors.ConveyorError):
        for kind, status, code in STATUS:
            if isinstance(exc, kind):
                field = ""
                if isinstance(exc, errors.InvalidInput) and exc.problems:
                    field = exc.problems[0].location.field
                return problem(status, code, str(exc), field=field)
    log.error("unexpected error", path=request.url.path, error=type(exc).__name__)
    return problem(500, "internal", "internal error; see the server log")
