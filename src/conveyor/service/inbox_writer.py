"""Group commit for the webhook inbox: one writer thread, one transaction per batch waiting.

Each HTTP request verifies and parses its delivery itself (``events.prepare``,
no I/O), then hands it to the writer and waits. The writer takes *every*
delivery waiting at that moment (up to ``MAX_BATCH``), stores them in one
transaction (``events.store``), commits, and only then answers each waiting
request, so a 2xx still follows the durable commit of that request's own
events. Under load, the deliveries that arrive while one transaction commits
share the next one: the cost of a transaction (and of SQLite's write lock) is
paid once per batch instead of once per delivery, no request holds a thread,
and the event loop is woken once per batch, not once per request.

Failures: if a batch's transaction fails, nothing of it is stored (it rolls
back as a whole). When the batch held more than one delivery and the error
could come from one delivery's data (an error raised by a statement that is
not a connection or lock problem, e.g. a value PostgreSQL finds too long),
each delivery is tried again alone, so one bad delivery cannot make the others
fail; every delivery whose own transaction fails gets the error (the webhook
endpoint answers 503 and the sender retries). A database that is unreachable
or locked is not retried here: every request of the batch gets the error.

The thread starts with the first delivery and ends after ``idle_seconds``
without any, or on ``close``, which first stores everything already submitted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy import exc

from conveyor.service import events
from conveyor.service.context import Services
from conveyor.store.database import translate_errors

log = structlog.get_logger("conveyor.inbox")

# Bound one transaction (and one statement's parameters); more wait for the next one.
MAX_BATCH = 256
IDLE_SECONDS = 5.0

Store = Callable[[Services, Sequence[events.Prepared]], list[events.Ingested]]
_Answer = events.Ingested | BaseException


@dataclass(frozen=True, slots=True)
class _Waiting:
    prepared: events.Prepared
    # Exactly one of: an asyncio future and its loop, or a thread-safe future.
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[events.Ingested] | Future[events.Ingested]


class WriterClosed(RuntimeError):
    """The writer was closed: the delivery was not stored."""


class InboxWriter:
    """Stores prepared deliveries in batches, one transaction at a time, on its own thread."""

    def __init__(
        self,
        services: Services,
        *,
        max_batch: int = MAX_BATCH,
        idle_seconds: float = IDLE_SECONDS,
        store: Store | None = None,
    ) -> None:
        self._services = services
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._store = store
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sleeping = False
        self._closed = False

    async def write(self, prepared: events.Prepared) -> events.Ingested:
        """Store one delivery from a coroutine; returns after the commit that stored it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[events.Ingested] = loop.create_future()
        self._enqueue(_Waiting(prepared, loop, future))
        return await future

    def submit(self, prepared: events.Prepared) -> Future[events.Ingested]:
        """Store one delivery from any thread; the future resolves after the commit."""
        future: Future[events.Ingested] = Future()
        self._enqueue(_Waiting(prepared, None, future))
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new deliveries, store the ones already submitted, and stop the thread."""
        with self._wakeup:
            self._closed = True
            thread = self._thread
            self._wakeup.notify()
        if thread is not None:
            thread.join(timeout)

    def _enqueue(self, waiting: _Waiting) -> None:
        with self._wakeup:
            if self._closed:
                raise WriterClosed("the inbox writer is closed")
            self._waiting.append(waiting)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-inbox-writer", daemon=True
                )
                self._thread.start()
            elif self._sleeping:
                self._sleeping = False  # one wake-up is enough for all that arrive meanwhile
                self._wakeup.notify()

    def _run(self) -> None:
        # This thread's own connection, kept between batches (no pool round trip
        # per batch); replaced after any failure, closed when the thread ends.
        held = _HeldConnection(self._services)
        try:
            while True:
                with self._wakeup:
                    if not self._waiting and not self._closed:
                        self._sleeping = True
                        self._wakeup.wait(self._idle_seconds)
                        self._sleeping = False
                    if not self._waiting:
                        self._thread = None
                        return
                    count = min(len(self._waiting), self._max_batch)
                    batch = [self._waiting.popleft() for _ in range(count)]
                _answer(self._commit(batch, self._store or held.store))
        finally:
            held.close()

    def _commit(self, batch: list[_Waiting], store: Store) -> list[tuple[_Waiting, _Answer]]:
        try:
            results = store(self._services, [w.prepared for w in batch])
        except Exception as error:
            if len(batch) > 1 and _may_be_one_delivery(error):
                log.warning("batch not stored; storing its deliveries one by one", size=len(batch))
                return [answer for waiting in batch for answer in self._commit([waiting], store)]
            log.error("deliveries not stored", size=len(batch), error=str(error))
            return [(waiting, error) for waiting in batch]
        return list(zip(batch, results, strict=True))


class _HeldConnection:
    """One writer thread's connection: opened on first use, dropped after a failure."""

    def __init__(self, services: Services) -> None:
        self._engine = services.engine
        self._connection: sa.Connection | None = None

    def store(self, services: Services, batch: Sequence[events.Prepared]) -> list[events.Ingested]:
        if self._connection is None:
            with translate_errors(self._engine):
                self._connection = self._engine.connect()
        try:
            return events.store(services, batch, connection=self._connection)
        except Exception:
            self.close()  # the next batch starts on a fresh connection
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _answer(answers: list[tuple[_Waiting, _Answer]]) -> None:
    """Resolve every future: thread-safe ones here, each event loop's in one call on it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiting, _Answer]]] = {}
    for waiting, answer in answers:
        if waiting.loop is None:
            _resolve(waiting, answer)
        else:
            by_loop.setdefault(waiting.loop, []).append((waiting, answer))
    for loop, on_loop in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_all, on_loop)
        except RuntimeError:  # the loop is closed: nobody waits for these answers any more
            pass


def _resolve_all(answers: list[tuple[_Waiting, _Answer]]) -> None:
    for waiting, answer in answers:
        _resolve(waiting, answer)


def _resolve(waiting: _Waiting, answer: _Answer) -> None:
    # A cancelled waiter (the client went away) got no 2xx; its events may be stored.
    with contextlib.suppress(asyncio.InvalidStateError, InvalidStateError):
        if isinstance(answer, BaseException):
            waiting.future.set_exception(answer)
        else:
            waiting.future.set_result(answer)


def _may_be_one_delivery(error: Exception) -> bool:
    """Whether a failed batch is worth splitting: an error in some row's data, not the database."""
    return isinstance(error, exc.StatementError) and not isinstance(
        error, exc.OperationalError | exc.InterfaceError
    )
