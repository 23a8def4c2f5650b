"""structlog set-up, with the processor that keeps credentials out of every log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from conveyor.core.credentials import MASK, Secret

SECRET_KEYS = re.compile(r"password|token|secret|authorization|cookie", re.IGNORECASE)
# Remote error bodies and other long values are cut before they are logged.
MAX_VALUE = 500


def redact(
    _logger: object,
    _method: str,
    event: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    """Mask Secret values and values under secret-looking keys; cut long strings."""
    for key, value in list(event.items()):
        if isinstance(value, Secret) or (key != "event" and SECRET_KEYS.search(key)):
            event[key] = MASK
        elif isinstance(value, str) and len(value) > MAX_VALUE:
            event[key] = value[:MAX_VALUE] + "…"
    return event


def configure(*, debug: bool = False) -> None:
    """Human-readable logs on stderr; results stay alone on stdout."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if debug else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
