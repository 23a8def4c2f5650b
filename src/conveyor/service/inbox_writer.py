"""Group commit for the webhook inbox: one writer thread, one transaction per batch waiting.

Each HTTP request verifies and parses its delivery itself (``events.prepare``,
no I/O), then hands it to the writer and waits for its future. The writer
takes *every* delivery waiting at that moment, stores them in one transaction
(``events.store``), commits, and only then resolves each request's future, so
a 2xx still follows the durable commit of that request's own events. Under
load, the deliveries that arrive while one transaction commits share the next
one: the cost of a transaction (and of SQLite's write lock) is paid once per
batch instead of once per delivery, and no request blocks a thread of its own.

Failures: if a batch's transaction fails, nothing of it is stored (it rolls
back as a whole). When the batch held more than one delivery and the error
could belong to one delivery's data (an integrity or data error, e.g. a value
PostgreSQL finds too long), each delivery is tried again alone, so one bad
delivery cannot make the others fail; every delivery whose own transaction
fails gets the error (the endpoint answers 503, and the sender retries). A
database that is unreachable or locked is not retried here: every request of
the batch gets the error at once.

The thread starts on the first delivery and ends after ``idle_seconds``
without any, or on ``close``, which first stores everything already submitted.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import structlog
from sqlalchemy import exc

from conveyor.service import events
from conveyor.service.context import Services

log = structlog.get_logger("conveyor.inbox")

# Bound one transaction (and the memory of one statement); more just wait for the next.
MAX_BATCH = 256
IDLE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Waiting:
    prepared: events.Prepared
    future: Future[events.Ingested]


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
        store: Callable[[Services, Sequence[events.Prepared]], list[events.Ingested]] = (
            events.store
        ),
    ) -> None:
        self._services = services
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._store = store
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, prepared: events.Prepared) -> Future[events.Ingested]:
        """Queue one delivery; the future resolves after the commit that stored it."""
        future: Future[events.Ingested] = Future()
        with self._wakeup:
            if self._closed:
                raise WriterClosed("the inbox writer is closed")
            self._waiting.append(_Waiting(prepared, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-inbox-writer", daemon=True
                )
                self._thread.start()
            else:
                self._wakeup.notify()
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new deliveries, store the ones already submitted, and stop the thread."""
        with self._wakeup:
            self._closed = True
            thread = self._thread
            self._wakeup.notify()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                if not self._waiting and not self._closed:
                    self._wakeup.wait(self._idle_seconds)
                if not self._waiting:
                    self._thread = None
                    return
                count = min(len(self._waiting), self._max_batch)
                batch = [self._waiting.popleft() for _ in range(count)]
            self._commit([w for w in batch if w.future.set_running_or_notify_cancel()])

    def _commit(self, batch: list[_Waiting]) -> None:
        if not batch:
            return
        try:
            results = self._store(self._services, [w.prepared for w in batch])
        except Exception as error:
            if len(batch) > 1 and _may_be_one_delivery(error):
                log.warning("batch not stored; storing its deliveries one by one", size=len(batch))
                for waiting in batch:
                    self._commit_alone(waiting)
                return
            log.error("deliveries not stored", size=len(batch), error=type(error).__name__)
            for waiting in batch:
                waiting.future.set_exception(error)
            return
        for waiting, result in zip(batch, results, strict=True):
            waiting.future.set_result(result)

    def _commit_alone(self, waiting: _Waiting) -> None:
        try:
            [result] = self._store(self._services, [waiting.prepared])
        except Exception as error:
            log.error("delivery not stored", endpoint=waiting.prepared.endpoint, error=str(error))
            waiting.future.set_exception(error)
        else:
            waiting.future.set_result(result)


def _may_be_one_delivery(error: Exception) -> bool:
    """Whether a failed batch is worth splitting: an error in some row's data, not the database."""
    return isinstance(error, exc.StatementError) and not isinstance(
        error, exc.OperationalError | exc.InterfaceError
    )
