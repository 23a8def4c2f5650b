"""One long-lived event loop per worker thread, and the resources kept on it.

The use cases are synchronous and call async adapters (the registry client)
through ``run``. Outside a kept loop ``run`` is ``asyncio.run``: a new loop
per call, and nothing opened on it may outlive the call. A thread that enters
``thread_loop()`` (the server's worker) instead runs every call on its one
loop, so connection pools opened there (an httpx client and its SSL context)
can be kept in ``shared`` and reused by every later call of that thread; they
are closed when the thread leaves ``thread_loop()``.

A kept resource is handed out only to code running on the loop that owns it:
another thread, or a nested ``asyncio.run``, gets None and opens its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")


class Closable(Protocol):
    """A resource that is closed on its loop (an httpx client, a registry client)."""

    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Closable)


class _Kept:
    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.loop = runner.get_loop()
        self.resources: dict[Hashable, Closable] = {}

    async def aclose(self) -> None:
        resources, self.resources = list(self.resources.values()), {}
        for resource in resources:
            try:
                await resource.aclose()
            except Exception:
                pass


_local = threading.local()


def _kept() -> _Kept | None:
    kept: _Kept | None = getattr(_local, "kept", None)
    return kept


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, on this thread's kept loop if any."""
    kept = _kept()
    if kept is None:
        return asyncio.run(coroutine)
    return kept.runner.run(coroutine)


def keeps_loop() -> bool:
    """Whether this thread is inside ``thread_loop()`` (tasks may outlive one ``run``)."""
    return _kept() is not None


@contextmanager
def thread_loop() -> Iterator[None]:
    """Keep one event loop for this thread until the block ends; then close what it kept."""
    if _kept() is not None:
        raise RuntimeError("this thread already keeps an event loop")
    with asyncio.Runner() as runner:
        kept = _Kept(runner)
        _local.kept = kept
        try:
            yield
        finally:
            _local.kept = None
            runner.run(kept.aclose())


def shared(key: Hashable, factory: Callable[[], R]) -> R | None:
    """The resource kept under ``key`` on the running loop, made on first use.

    None unless the caller runs on a loop kept by ``thread_loop`` in this
    thread: the caller then opens (and closes) a resource of its own.
    """
    kept = _kept()
    if kept is None:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if loop is not kept.loop:
        return None
    resource = kept.resources.get(key)
    if resource is None:
        resource = kept.resources[key] = factory()
    return cast("R", resource)
