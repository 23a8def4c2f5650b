"""Waiting for something another process does: a condition, a server answering."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest


def wait_until(
    check: Callable[[], bool], what: str, *, timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def serving(port: int) -> bool:
    """Whether a `conveyor serve` on 127.0.0.1:``port`` answers its health check."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").is_success
    except httpx.HTTPError:
        return False
