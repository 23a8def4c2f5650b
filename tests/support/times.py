"""Fixed instants for tests that store times (tests pass `now`; nothing reads the clock)."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
