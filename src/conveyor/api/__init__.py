"""HTTP in and out: the REST API and the webhook endpoints (ASGI, starlette)."""

from __future__ import annotations
