"""What every use case receives: definitions, the database, adapters and a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from conveyor.config import models
from conveyor.config.loader import Definitions
from conveyor.core.credentials import Credentials
from conveyor.core.images import PinnedImage, Repository
from conveyor.core.ports import Registry
from conveyor.webhooks.oidc import SigningKeys


class Registries(Protocol):
    """Registry clients and definitions by configured name."""

    def client(self, name: str) -> Registry: ...

    def definition(self, name: str) -> models.Registry: ...

    def credentials(self, name: str) -> Credentials | None: ...

    async def transfer(
        self,
        image: PinnedImage,
        *,
        source: str,
        destination: str,
        to: Repository,
        tag: str | None = None,
    ) -> PinnedImage:
        """Copy a digest between two configured registries."""
        ...


class WebhookKeys(SigningKeys, Protocol):
    """An ``auth: oidc`` endpoint's signing keys (``conveyor.jwks.JwksKeys``).

    ``get`` never does I/O; ``request_refresh`` starts a fetch in a thread and
    returns the future to wait on, or None when none will start (rate limit).
    """

    def request_refresh(self) -> Future[None] | None: ...


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(kw_only=True)
class Services:
    """The dependencies of the use cases, built once per process by the wiring."""

    definitions: Definitions
    engine: sa.Engine
    registries: Registries
    data_dir: Path
    clock: Callable[[], datetime] = utc_now
    base_env: Mapping[str, str] = field(default_factory=dict)
    # Process environment values that templates may use (after run parameters).
    environ: Mapping[str, str] = field(default_factory=dict)
    # Signing keys of the auth: oidc webhook endpoints, by endpoint name.
    webhook_keys: Mapping[str, WebhookKeys] = field(default_factory=dict)
    # Inbox events older than this (and done with) are deleted hourly; None keeps them all.
    event_retention: timedelta | None = None
