"""The background work of `conveyor serve` and `conveyor worker`: inbox, runs, pollers.

One thread does it all, on one event loop kept for the thread's life
(`conveyor.aio.thread_loop`), so registry clients and their connections are
reused from one event or run to the next.

**When it looks for work.** At once when the HTTP side accepts events
(`Wakeup.accepted`, called after the inbox commit), and otherwise every
`poll` seconds: polling remains the fallback for work written by another
process (a second server on the same PostgreSQL, `conveyor run`, an approval
from the CLI) and for runs whose retry or expiry time comes. The inbox is
also asked again at once while its batches come full; runs are claimed
whenever a slot is free. Pollers and schedules are looked at every `poll`
seconds.

**Order.** Events and runs alternate in small batches (up to `EVENT_BATCH`
events, then up to `RUN_BATCH` runs started), oldest first, so a steady
stream of events does not hold back the runs they start.

**Runs do not block the rest.** A started run is a task on the thread's
event loop, holding one of the worker's `concurrency` slots until it ends or
stops to wait (an approval, a retry). Between rounds the loop lets the runs
in flight progress (`Worker.settle`) until one ends, an event is announced,
or `poll` seconds pass; so a deploy step that takes ten minutes does not
delay the events, polls, schedules and other runs behind it. On stop, runs
in flight get `STOP_WAIT` seconds to end or reach a wait; a run still going
then has its command stopped and is given back, unclaimed, for the next
worker (or this one, restarted) to take over (`Worker.abandon`).

**Giving way to ingestion.** The worker shares the process (and Python's
GIL) with the HTTP server. While events are being accepted faster than
`PRESSURE_RATE` per second, the worker pauses after each round (a batch
and the time its runs then progressed) for `GIVE_WAY` times as long as the
round took (at most `MAX_PAUSE`), so under a
burst it takes at most 1/(1+GIVE_WAY) of the time and the HTTP side keeps
accepting; the events wait, durably, in the inbox. It never stops: after
every pause it does one more batch, so even an endless burst cannot starve
it, and at ordinary rates it never pauses.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from conveyor import aio
from conveyor.engine.scheduler import Scheduler
from conveyor.engine.worker import Worker
from conveyor.service import events
from conveyor.service.context import Services

EVENT_BATCH = 8
RUN_BATCH = 8
# Accepted events per second (over PRESSURE_WINDOW seconds) above which the worker gives way.
PRESSURE_RATE = 200.0
PRESSURE_WINDOW = 1.0
# Under a burst the HTTP side comes first (bench/webhook.py: 1,407-1,506 accepted events/s
# with 20 and 2 s, against 587-759 with 3 and 0.5 s, in the same minutes).
GIVE_WAY = 20.0
MAX_PAUSE = 2.0
# While runs are in flight and work keeps coming, runs progress this long between rounds.
RUN_SLICE = 0.02
# On stop, how long runs in flight get to end or reach a wait (the server waits 30 s).
STOP_WAIT = 25.0


class Wakeup:
    """Wakes the worker when events are accepted, and measures how fast they come.

    Thread-safe; ``accepted`` is called by request handlers and costs a lock
    and a deque append.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._signal = threading.Event()
        self._lock = threading.Lock()
        self._arrivals: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def accepted(self, count: int) -> None:
        """``count`` new events were committed to the inbox."""
        now = self._clock()
        with self._lock:
            self._arrivals.append((now, count))
            self._in_window += count
            self._forget(now)
        self._signal.set()

    def wake(self) -> None:
        """Wake the worker without an event (e.g. to stop)."""
        self._signal.set()

    def rate(self) -> float:
        """Events accepted per second over the last PRESSURE_WINDOW seconds."""
        with self._lock:
            self._forget(self._clock())
            return self._in_window / PRESSURE_WINDOW

    def under_pressure(self) -> bool:
        """Whether events are arriving faster than PRESSURE_RATE."""
        return self.rate() > PRESSURE_RATE

    def clear(self) -> None:
        """Forget earlier wake-ups (called before looking for work)."""
        self._signal.clear()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds; True when woken."""
        return self._signal.wait(timeout)

    def is_set(self) -> bool:
        """Whether a wake-up came since the last ``clear``."""
        return self._signal.is_set()

    def _forget(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= now - PRESSURE_WINDOW:
            self._in_window -= self._arrivals.popleft()[1]


def run_background(
    services: Services,
    worker: Worker,
    stop: threading.Event,
    *,
    poll: float,
    wakeup: Wakeup,
    report: Callable[[str], None],
) -> None:
    """Process the inbox, drive runs, poll and fire schedules until ``stop`` is set.

    Errors are reported and the loop goes on: one bad registry must not stop
    the server. Set ``stop`` and call ``wakeup.wake()`` to end it.
    """
    scheduler = Scheduler(services=services, owner=worker.name)
    next_tick = 0.0
    next_look = 0.0  # when the inbox is next looked at without being told
    more_events = True
    try:
        with aio.thread_loop():
            while not stop.is_set():
                announced = wakeup.is_set()
                wakeup.clear()  # a wake-up during the work below makes another round
                busy = 0
                try:
                    if time.monotonic() >= next_tick:
                        busy += len(scheduler.tick())
                        next_tick = time.monotonic() + poll
                    # Events are looked at when announced, while batches come full,
                    # and every `poll` seconds; not after every run.
                    look = announced or more_events or time.monotonic() >= next_look
                    if look:
                        next_look = time.monotonic() + poll
                    found, started = _round(
                        services,
                        worker,
                        stop,
                        wakeup,
                        events_too=look,
                        idle=poll,
                        wake=wakeup.is_set,
                    )
                    if look:
                        more_events = found == EVENT_BATCH
                    busy += found + started
                except Exception as exc:  # the server keeps serving; the error is shown
                    report(f"background error: {type(exc).__name__}: {exc}")
                if not busy and not worker.in_flight:
                    wakeup.wait(poll)
            _finish_in_flight(worker, report)
    finally:
        scheduler.release()


def _round(
    services: Services,
    worker: Worker,
    stop: threading.Event,
    wakeup: Wakeup,
    *,
    events_too: bool,
    idle: float,
    wake: Callable[[], bool],
) -> tuple[int, int]:
    """A batch of events (``events_too``), runs started in free slots, then runs progress.

    Runs in flight progress until one ends (a free slot), ``wake()`` is true, or
    ``RUN_SLICE`` (after work) or ``idle`` seconds pass. Returns how many events
    were processed and how many runs started.
    """
    began = time.monotonic()
    found = 0
    if events_too:
        found = events.process_pending(services, owner=worker.name, limit=EVENT_BATCH)
    started = aio.run(worker.start_runs(limit=RUN_BATCH))
    if worker.in_flight:
        wait = RUN_SLICE if found or started else idle
        aio.run(worker.settle(timeout=wait, wake=wake))
    if found or started:
        give_way(stop, wakeup, began)
    return found, started


def give_way(stop: threading.Event, wakeup: Wakeup, began: float) -> None:
    """Under an ingestion burst, pause GIVE_WAY times as long as the work since ``began``."""
    if wakeup.under_pressure():
        stop.wait(min(GIVE_WAY * (time.monotonic() - began), MAX_PAUSE))


def drain(services: Services, worker: Worker, stop: threading.Event, wakeup: Wakeup) -> int:
    """Rounds of work until no event, no run to start and no run in flight; returns how many.

    On this thread's kept loop, or on one kept for the call.
    """
    with contextlib.ExitStack() as stack:
        if not aio.keeps_loop():
            stack.enter_context(aio.thread_loop())
        done = 0
        while not stop.is_set():
            found, started = _round(
                services, worker, stop, wakeup, events_too=True, idle=MAX_PAUSE, wake=_never
            )
            done += found + started
            if not (found or started or worker.in_flight):
                break
        return done


def _never() -> bool:
    return False


def _finish_in_flight(worker: Worker, report: Callable[[str], None]) -> None:
    """On stop, let runs in flight end or reach a wait, as a stop between batches always did."""
    if not worker.in_flight:
        return
    report(f"stopping: waiting for {worker.in_flight} run(s) in flight")
    try:
        aio.run(worker.settle(timeout=STOP_WAIT, until_all=True))
    except Exception as exc:
        report(f"background error: {type(exc).__name__}: {exc}")
    if worker.in_flight:
        # Leaving the kept loop cancels these: their commands are killed, and the
        # runs are given back for a takeover.
        report(
            f"stopping: {worker.in_flight} run(s) still in flight; their commands are "
            "stopped and the runs given back for the next worker to take over"
        )
        worker.abandon()
