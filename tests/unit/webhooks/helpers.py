"""Building deliveries for the webhook tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

from conveyor.core.credentials import Secret
from conveyor.core.events import Headers, InboundDelivery

FIXTURES = Path(__file__).parents[2] / "fixtures" / "webhooks"
SECRET = Secret("s3cret-Ω-value")
RECEIVED_AT = datetime(2026, 11, 28, 10, 16, tzinfo=UTC)
JSON = "application/json"


def payload(name: str) -> bytes:
    """The recorded payload's exact bytes."""
    return (FIXTURES / f"{name}.json").read_bytes()


def delivery(body: bytes, content_type: str | None = JSON, **headers: str) -> InboundDelivery:
    """A delivery with the given body and headers (underscores in names become dashes)."""
    items = {name.replace("_", "-"): value for name, value in headers.items()}
    if content_type is not None:
        items["Content-Type"] = content_type
    return InboundDelivery(headers=Headers(items), body=body, received_at=RECEIVED_AT)


def bearer(secret: str = SECRET.reveal()) -> dict[str, str]:
    """An Authorization header with the bearer token."""
    return {"Authorization": f"Bearer {secret}"}


def basic(password: str = SECRET.reveal(), user: str = "conveyor") -> dict[str, str]:
    """An Authorization header with Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def github_signature(body: bytes, secret: str = SECRET.reveal()) -> str:
    """GitHub's X-Hub-Signature-256 value for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
