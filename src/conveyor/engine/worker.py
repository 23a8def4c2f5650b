"""The worker: claims runs that need attention and drives their steps, crash-safely.

A run needs attention when its ``wake_at`` has come (queued, an approval
arrived, a retry is due, a cancel was asked) and no live worker holds it. A
worker holds a run by a lease it renews while it works; when a worker dies
the lease runs out and another worker takes the run over. A step found
``running`` at that moment was interrupted: idempotent kinds (deploy,
verify) run again, others fail with reason "interrupted". Before either, a
command the dead worker left running on this host is stopped (see
engine.processes). Every transition is committed before the step's effects
start, so no step completes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import structlog
from sqlalchemy.orm import Session

from conveyor.config import models
from conveyor.config import steps as step_configs
from conveyor.core import gates
from conveyor.core.credentials import Secret
from conveyor.core.errors import ConveyorError, StepFailed
from conveyor.core.images import PinnedImage
from conveyor.core.runs import RunStatus, StepStatus, Succeeded, Waiting, recover_step
from conveyor.engine import processes
from conveyor.engine.context import GateFacts, StepContext
from conveyor.engine.steps.table import RUNNERS, StepRunner
from conveyor.service import environments, runs, triggers
from conveyor.service.context import Services
from conveyor.store import approvals, claims, logs, tables
from conveyor.store import environments as store_environments
from conveyor.store import runs as store_runs
from conveyor.store.database import unit_of_work

log = structlog.get_logger("conveyor.worker")

# How long a claim lasts without renewal; renewed every third of it while a step runs.
DEFAULT_LEASE = timedelta(seconds=30)
# A deploy that finds its environment locked by another deploy looks again after this.
BUSY_RETRY = timedelta(seconds=2)
RETRY_BACKOFF = timedelta(seconds=5)
# How often `settle` looks at its wake-up flag while runs progress.
WAKE_CHECK = 0.05


def worker_name() -> str:
    """host:pid, unique among live workers."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Begun:
    """A step committed as running, with what its context needs (read in that transaction)."""

    step_id: int
    config: step_configs.StepCommon
    step_index: int
    step_name: str
    pipeline: str
    environment: str | None
    image: PinnedImage | None
    registry: str | None
    parameters: dict[str, str]
    author: str
    gate: GateFacts | None
    approvers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Orphan:
    """A step found running whose command (recorded) may outlive its dead worker."""

    step_id: int
    process: dict[str, Any]


# What beginning a run's next step leads to: run a step, stop an orphan first, or nothing.
_Next = _Begun | _Orphan | None


@dataclass(kw_only=True)
class Worker:
    """Drives runs of one Conveyor installation; several may run side by side."""

    services: Services
    name: str
    lease: timedelta = DEFAULT_LEASE
    # Runs driven at once by this worker (their steps overlap; each run's steps stay in order).
    concurrency: int = 1
    _awaited: frozenset[str] | None = field(default=None, init=False, repr=False)
    # Runs started by ``start_runs`` and not yet reaped: tasks on the caller's kept event
    # loop (conveyor.aio.thread_loop), which progress whenever that loop runs.
    _in_flight: set[asyncio.Future[None]] = field(default_factory=set, init=False, repr=False)
    _abandoning: bool = field(default=False, init=False, repr=False)

    # --- claiming ----------------------------------------------------------------------------

    def claim(self) -> int | None:
        """Take one run that needs attention, or None."""
        with unit_of_work(self.services.engine) as session:
            claim = claims.claim_next_run(
                session, worker=self.name, lease=self.lease, now=self.services.clock()
            )
            return claim.run_id if claim is not None else None

    def claim_run(self, run_id: int) -> bool:
        """Take this run if it needs attention now and nobody else holds it."""
        with unit_of_work(self.services.engine) as session:
            claim = claims.claim_run(
                session, run_id, worker=self.name, lease=self.lease, now=self.services.clock()
            )
            return claim is not None

    def release(self, session: Session, run: tables.Run, *, wake_at: datetime | None) -> None:
        run.claimed_by = None
        run.lease_expires_at = None
        run.wake_at = wake_at

    # --- the loop ----------------------------------------------------------------------------

    async def run_until_idle(self, *, limit: int | None = None) -> int:
        """Process runs until none needs attention now (or ``limit`` runs); returns how many."""
        count = 0
        started: list[asyncio.Future[None]] = []
        running: set[asyncio.Future[None]] = set()
        try:
            while limit is None or count < limit:
                while len(running) >= max(self.concurrency, 1):
                    _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                claimed = self._claim_and_begin()
                if claimed is None:
                    break
                task = asyncio.ensure_future(self._drive(*claimed))
                started.append(task)
                running.add(task)
                count += 1
        finally:
            if running:  # every run started here ends (or waits) before this returns
                await asyncio.wait(running)
        for finished in started:
            finished.result()  # an unexpected error of a run reaches the caller, as before
        return count

    @property
    def in_flight(self) -> int:
        """Runs started by ``start_runs`` that have not ended or stopped to wait yet."""
        return len(self._in_flight)

    async def start_runs(self, *, limit: int) -> int:
        """Claim and start up to ``limit`` runs in free slots, without waiting for them.

        The background loop's way to drive runs: a run with a long step holds
        one of ``concurrency`` slots while events, polls and other runs go on.
        Call ``settle`` on the same event loop to let the started runs progress.
        Raises the error of a run that ended unexpectedly, once.
        """
        self._reap()
        started = 0
        while started < limit and len(self._in_flight) < max(self.concurrency, 1):
            claimed = self._claim_and_begin()
            if claimed is None:
                break
            self._in_flight.add(asyncio.ensure_future(self._drive(*claimed)))
            started += 1
        return started

    async def settle(
        self,
        *,
        timeout: float,
        wake: Callable[[], bool] = lambda: False,
        until_all: bool = False,
    ) -> None:
        """Let started runs progress until one (or all) ends, ``wake()`` is true, or timeout.

        ``wake`` is looked at every ``WAKE_CHECK`` seconds (a thread-safe flag
        such as a pending event). Raises the error of a run that ended
        unexpectedly, once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {task for task in self._in_flight if not task.done()}
        if len(pending) < len(self._in_flight) and not until_all:
            pending = set()  # a slot is free already
        while pending and not wake():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            done, pending = await asyncio.wait(
                pending,
                timeout=min(remaining, WAKE_CHECK),
                return_when=asyncio.ALL_COMPLETED if until_all else asyncio.FIRST_COMPLETED,
            )
            if done and not until_all:
                break
        self._reap()

    def abandon(self) -> None:
        """The process is stopping: runs cancelled from now on are left to a takeover.

        Their commands are killed (process group) as on any cancel, but the run
        is not marked cancelled: it is given back (unclaimed, still running), so
        the next worker to look, or this server once restarted, takes it over at
        once and applies the usual rules for a step found running (idempotent
        kinds run again, others fail as interrupted).
        """
        self._abandoning = True

    def _reap(self) -> None:
        finished = {task for task in self._in_flight if task.done()}
        self._in_flight -= finished
        errors = [task.exception() for task in finished if not task.cancelled()]
        for error in errors:
            if error is not None:
                raise error

    async def run_forever(self, *, poll: float = 1.0, stop: asyncio.Event | None = None) -> None:
        """Process runs until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if await self.run_until_idle() == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)

    async def process(self, run_id: int) -> None:
        """Advance one claimed run as far as it can go now."""
        await self._drive(run_id, self._begin_next_step(run_id))

    async def _drive(self, run_id: int, step: _Next) -> None:
        while step is not None:
            if isinstance(step, _Orphan):
                step = await self._stop_orphan(run_id, step)
            else:
                step = await self._execute(run_id, step)
        await self._after(run_id)

    async def _after(self, run_id: int) -> None:
        """Once a run has ended, fire the `pipeline:` triggers that wait for it.

        The commit that ended the run marked it ``triggers_due``; if this
        process dies before the triggers are handled, the scheduler's sweep
        (``triggers.follow_up``) handles them instead.
        """
        if not self._awaited_pipelines():
            return  # no `pipeline:` trigger anywhere: nothing can wait for this run
        with unit_of_work(self.services.engine, read_only=True) as session:
            due = runs.load_run(session, run_id).triggers_due
        if due:
            # In a thread: starting a run may resolve tags in the registry with its own loop.
            await asyncio.to_thread(triggers.after_run, self.services, run_id)

    def _triggers_due(self, pipeline: str, status: RunStatus) -> bool:
        """Whether a run of ``pipeline`` ending with ``status`` leaves triggers to handle."""
        return status in triggers.TRIGGERING and pipeline in self._awaited_pipelines()

    def _awaited_pipelines(self) -> frozenset[str]:
        """Pipelines that some `pipeline:` trigger waits for."""
        if self._awaited is None:
            self._awaited = triggers.awaited_pipelines(self.services.definitions)
        return self._awaited

    # --- one step ----------------------------------------------------------------------------

    def _claim_and_begin(self) -> tuple[int, _Next] | None:
        """Claim the next run and commit its next step as running, in one transaction."""
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            claim = claims.claim_next_run(session, worker=self.name, lease=self.lease, now=now)
            if claim is None:
                return None
            run = store_runs.read_run(session, claim.run_id)
            return claim.run_id, self._begin(session, run, now=now)

    def _begin_next_step(self, run_id: int) -> _Next:
        """Commit the next step as running (or finish the run); None when there is nothing to do."""
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            return self._begin(session, store_runs.read_run(session, run_id), now=now)

    def _begin(
        self,
        session: Session,
        run: store_runs.RunRow,
        *,
        now: datetime,
        steps: list[store_runs.StepRow] | None = None,
    ) -> _Next:
        """In the caller's transaction: mark the next step running, or end the run.

        The step's status is committed with the caller's transaction, before
        its effects start (the caller runs it only after the commit).
        ``steps``: the run's steps, when the caller has read them in this transaction.
        Reads and writes are Core statements (store.runs): this is the worker's hot path.
        A step found running with a command recorded is an `_Orphan`: the
        caller stops that command first (`_stop_orphan`), then begins again.
        """
        if run.claimed_by != self.name:
            return None
        ordered = store_runs.read_steps(session, run.id) if steps is None else steps
        for found in ordered:  # before the step is re-run, failed, or cancelled with its run
            if found.status == StepStatus.RUNNING and found.process is not None:
                return _Orphan(step_id=found.id, process=found.process)
        if run.cancel_requested_at is not None:
            self._finish(session, run, RunStatus.CANCELLED, now=now, error="cancelled")
            return None
        started: dict[str, object] = {}
        if run.status == RunStatus.QUEUED:
            started = {"status": RunStatus.RUNNING, "started_at": now}
        for interrupted in ordered:
            if interrupted.status == StepStatus.RUNNING:
                self._recover(session, run, interrupted, now=now, started=started)
                if interrupted.status == StepStatus.FAILED:
                    return None
        step = next((s for s in ordered if not StepStatus(s.status).is_terminal), None)
        if step is None:
            self._succeed(session, run, now=now, steps=ordered, started=started)
            return None
        if step.status == StepStatus.PENDING:
            step.status = StepStatus.RUNNING
            step.started_at = now
            step.attempt += 1
            store_runs.set_step(
                session, step.id, status=step.status, started_at=now, attempt=step.attempt
            )
        run.status = RunStatus.RUNNING
        store_runs.set_run(
            session, run.id, **started, status=run.status, lease_expires_at=now + self.lease
        )
        return self._facts(session, run, step)

    def _recover(
        self,
        session: Session,
        run: store_runs.RunRow,
        step: store_runs.StepRow,
        *,
        now: datetime,
        started: dict[str, object],
    ) -> None:
        step.status = recover_step(step.kind)
        if step.status != StepStatus.FAILED:
            store_runs.set_step(session, step.id, status=step.status)
            return
        store_runs.set_step(
            session,
            step.id,
            status=step.status,
            reason="interrupted: the worker running it stopped (this step kind is not re-run)",
            finished_at=now,
        )
        self._finish(
            session,
            run,
            RunStatus.FAILED,
            now=now,
            error=f"step '{step.name}' interrupted",
            started=started,
        )

    def _succeed(
        self,
        session: Session,
        run: store_runs.RunRow,
        *,
        now: datetime,
        steps: list[store_runs.StepRow],
        started: dict[str, object],
    ) -> None:
        if run.environment is not None and run.image_digest is not None:
            approvers: list[str] = []
            if any(s.kind == "approval" for s in steps):  # only gates record approvals
                approvers = sorted(
                    {
                        a.user
                        for a in approvals.list_approvals(session, run.id)
                        if a.decision == "approve"
                    }
                )
            store_environments.record_verification(
                session,
                digest=run.image_digest,
                environment=run.environment,
                run_id=run.id,
                approvals=[{"user": user} for user in approvers],
                now=now,
            )
        self._finish(session, run, RunStatus.SUCCEEDED, now=now, error=None, started=started)

    def _finish(
        self,
        session: Session,
        run: store_runs.RunRow,
        status: RunStatus,
        *,
        now: datetime,
        error: str | None,
        started: dict[str, object] | None = None,
    ) -> None:
        """End the run, closing its unfinished steps (cancelled with it, else skipped)."""
        run.status = status
        store_runs.set_run(
            session,
            run.id,
            **(started or {}),
            status=status,
            finished_at=now,
            error=error,
            claimed_by=None,
            lease_expires_at=None,
            wake_at=None,
            triggers_due=self._triggers_due(run.pipeline, status),
        )
        store_runs.close_steps(
            session,
            run.id,
            status=StepStatus.CANCELLED if status == RunStatus.CANCELLED else StepStatus.SKIPPED,
            now=now,
        )

    async def _stop_orphan(self, run_id: int, orphan: _Orphan) -> _Next:
        """Stop the command a dead worker left running for this step, then begin again.

        On this host (and boot) a command still alive with the recorded start
        time is stopped, group and all: SIGTERM, SIGKILL after a grace. On
        another host nothing is touched, and the step's log says where it may
        still run. Either way the record is cleared and the step's log tells
        what was found, in the transaction that then applies the usual rules
        to the step (re-run or fail as interrupted, or end a cancelled run).
        """
        recorded = processes.CommandProcess.from_json(orphan.process)
        # Blocks up to the stop's grace: in a thread, as other runs go on. The claim's
        # lease is not renewed meanwhile: a lease shorter than the grace may let
        # another worker look too, which does no harm (stopping twice is stopping
        # once), and `_begin` goes on only if this worker still holds the run.
        message = await asyncio.to_thread(_stop_command, recorded)
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            logs.append_log(session, orphan.step_id, [message], stream="system", now=now)
            store_runs.set_step(session, orphan.step_id, process=None)
            return self._begin(session, store_runs.read_run(session, run_id), now=now)

    async def _execute(self, run_id: int, begun: _Begun) -> _Next:
        """Run one step and commit its outcome; returns the next step, begun in that commit."""
        step_id = begun.step_id
        context, runner = self._context(run_id, begun)
        lock = None
        if runner.kind == "deploy" and context.environment is not None:
            lock = claims.environment_lock(context.environment)
            if not self._lease(lock, run_id):
                self._wait(
                    run_id,
                    step_id,
                    Waiting(reason=f"another deploy to '{context.environment}' is in progress"),
                    wake_in=BUSY_RETRY,
                )
                return None
        task = asyncio.ensure_future(runner.run(context))
        heartbeat = asyncio.ensure_future(self._heartbeat(run_id, task, lock))
        try:
            outcome = await task
        except asyncio.CancelledError:
            if self._abandoning:  # the process stops: a takeover decides (see `abandon`)
                with unit_of_work(self.services.engine) as session:
                    claims.release_run(session, run_id, worker=self.name)
                return None
            if heartbeat.done() and heartbeat.result() == "lost":
                return None  # another worker holds the run now; it decides what happened
            self._fail(run_id, step_id, "cancelled", cancelled=True)
            return None
        except StepFailed as exc:
            self._fail(run_id, step_id, str(exc))
            return None
        except ConveyorError as exc:
            if exc.retryable:
                self._retry(run_id, step_id, runner.error_threshold, str(exc))
            else:
                self._fail(run_id, step_id, str(exc))
            return None
        except Exception as exc:
            self._retry(run_id, step_id, runner.error_threshold, f"{type(exc).__name__}: {exc}")
            return None
        finally:
            heartbeat.cancel()
            if lock is not None:
                with unit_of_work(self.services.engine) as session:
                    claims.release_lease(session, lock, owner=self._lock_owner(run_id))
        if isinstance(outcome, Waiting):
            self._wait(run_id, step_id, outcome, wake_in=None)
            return None
        return self._complete(run_id, step_id, outcome)

    def _lease(self, name: str, run_id: int) -> bool:
        """Take or renew a named lease (the environment's deploy lock) for one run."""
        with unit_of_work(self.services.engine) as session:
            return claims.acquire_lease(
                session,
                name,
                owner=self._lock_owner(run_id),
                ttl=self.lease,
                now=self.services.clock(),
            )

    def _lock_owner(self, run_id: int) -> str:
        """The holder of a deploy lock: this worker's run, so two runs here exclude each other."""
        return f"{self.name}/run-{run_id}"

    async def _heartbeat(
        self, run_id: int, task: asyncio.Future[Succeeded | Waiting], lock: str | None
    ) -> str:
        """Renew the claim (and the environment lock) while the step runs; stop it if cancelled."""
        interval = self.lease.total_seconds() / 3
        while not task.done():
            await asyncio.sleep(interval)
            now = self.services.clock()
            with unit_of_work(self.services.engine) as session:
                held = claims.renew_run_lease(
                    session, run_id, worker=self.name, lease=self.lease, now=now
                )
                run = session.get(tables.Run, run_id)
                cancelled = run is None or run.cancel_requested_at is not None
            if not held:
                # Another worker took the run over (our lease ran out): stop doing its work.
                task.cancel()
                return "lost"
            if lock is not None:
                self._lease(lock, run_id)
            if cancelled:
                task.cancel()
                return "cancelled"
        return "done"

    def _complete(self, run_id: int, step_id: int, outcome: Succeeded) -> _Next:
        """Commit the step's success and, in the same transaction, begin the next step."""
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            if not self._still_ours(session, run_id, now=now, outcome="succeeded"):
                return None
            run = store_runs.read_run(session, run_id)
            ordered = store_runs.read_steps(session, run_id)
            step = next(s for s in ordered if s.id == step_id)
            step.status = StepStatus.SUCCEEDED
            store_runs.set_step(
                session, step.id, status=step.status, finished_at=now, output=dict(outcome.output)
            )
            if outcome.image is not None:
                run.image_repository = str(outcome.image.repository)
                run.image_digest = str(outcome.image.digest)
                run.image_tag = outcome.image.tag
                config = self._pipeline(run.pipeline).steps[step.index]
                if isinstance(config, step_configs.BuildStep):
                    run.image_registry = config.registry
                store_runs.set_run(
                    session,
                    run.id,
                    image_repository=run.image_repository,
                    image_digest=run.image_digest,
                    image_tag=run.image_tag,
                    image_registry=run.image_registry,
                )
            if step.kind == "deploy" and run.environment is not None and not _dry(outcome):
                image = runs.image_of(run)
                assert image is not None
                environments.record_deployment(
                    session,
                    environment=run.environment,
                    image=image,
                    run_id=run.id,
                    deployed_by=run.triggered_by,
                    kind="rollback" if run.trigger_kind == "rollback" else "deploy",
                    at=now,
                )
            return self._begin(session, run, now=now, steps=ordered)

    def _wait(
        self, run_id: int, step_id: int, outcome: Waiting, *, wake_in: timedelta | None
    ) -> None:
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            if not self._still_ours(session, run_id, now=now, outcome="waiting"):
                return
            run = runs.load_run(session, run_id)
            step = session.get(tables.Step, step_id)
            assert step is not None
            step.status = StepStatus.WAITING
            step.reason = outcome.reason
            if step.started_at is None:
                step.started_at = now
            run.status = RunStatus.WAITING
            wake_at = now + wake_in if wake_in is not None else self._gate_expiry(run, step)
            self.release(session, run, wake_at=wake_at)

    def _still_ours(self, session: Session, run_id: int, *, now: datetime, outcome: str) -> bool:
        """Fence a step's outcome: True (and the lease renewed) while this worker holds the run.

        A worker that stalled (a frozen VM, a stopped process) past its lease may
        find the run taken over when its step ends. Its outcome is then dropped,
        in the transaction that would have written it: the conditional renewal
        locks the run's row (PostgreSQL) or runs under the write lock (SQLite),
        so no takeover can slip in between this check and the commit. The worker
        holding the run now decides what happened to the step (see ``_recover``).
        """
        if claims.renew_run_lease(session, run_id, worker=self.name, lease=self.lease, now=now):
            return True
        log.warning(
            "the run was taken over while its step ran; this worker's outcome is dropped",
            run=run_id,
            worker=self.name,
            outcome=outcome,
        )
        return False

    def _gate_expiry(self, run: tables.Run, step: tables.Step) -> datetime | None:
        config = self._pipeline(run.pipeline).steps[step.index]
        if isinstance(config, step_configs.ApprovalStep) and config.expires and step.started_at:
            return step.started_at + config.rule().expires_after  # type: ignore[operator]
        return None

    def _fail(self, run_id: int, step_id: int, reason: str, *, cancelled: bool = False) -> None:
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            outcome = "cancelled" if cancelled else "failed"
            if not self._still_ours(session, run_id, now=now, outcome=outcome):
                return
            run = store_runs.read_run(session, run_id)
            step = next(s for s in store_runs.read_steps(session, run_id) if s.id == step_id)
            store_runs.set_step(
                session,
                step_id,
                status=StepStatus.CANCELLED if cancelled else StepStatus.FAILED,
                reason=reason,
                finished_at=now,
            )
            status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED
            self._finish(session, run, status, now=now, error=f"step '{step.name}': {reason}")

    def _retry(self, run_id: int, step_id: int, threshold: int, reason: str) -> None:
        with unit_of_work(self.services.engine) as session:
            step = session.get(tables.Step, step_id)
            assert step is not None
            attempts = step.attempt
        if attempts >= threshold:
            self._fail(run_id, step_id, f"met its error threshold of {threshold}: {reason}")
            return
        now = self.services.clock()
        with unit_of_work(self.services.engine) as session:
            if not self._still_ours(session, run_id, now=now, outcome="retry"):
                return
            run = runs.load_run(session, run_id)
            step = session.get(tables.Step, step_id)
            assert step is not None
            step.status = StepStatus.PENDING
            step.reason = f"attempt {attempts} failed, retrying: {reason}"
            # Waiting until wake_at: claims honour the back-off only for waiting runs.
            run.status = RunStatus.WAITING
            self.release(session, run, wake_at=now + RETRY_BACKOFF)

    # --- the step's context ------------------------------------------------------------------

    def _pipeline(self, name: str) -> models.Pipeline:
        return runs.pipeline_of(self.services, name)

    def _facts(self, session: Session, run: store_runs.RunRow, step: store_runs.StepRow) -> _Begun:
        """What the step's context needs, read in the transaction that begins the step."""
        pipeline = self._pipeline(run.pipeline)
        config = pipeline.steps[step.index]
        gate = None
        if isinstance(config, step_configs.ApprovalStep):
            gate = GateFacts(
                decisions=runs.gate_decisions(session, run.id, step.name),
                opened_at=step.started_at or self.services.clock(),
            )
        approvers: tuple[str, ...] = ()
        if any(isinstance(s, step_configs.ApprovalStep) for s in pipeline.steps):
            approvers = tuple(
                sorted(
                    {
                        a.user
                        for a in approvals.list_approvals(session, run.id)
                        if a.decision == "approve"
                    }
                )
            )
        return _Begun(
            step_id=step.id,
            config=config,
            step_index=step.index,
            step_name=step.name,
            pipeline=run.pipeline,
            environment=run.environment,
            image=runs.image_of(run),
            registry=run.image_registry,
            parameters=dict(run.parameters),
            author=run.triggered_by,
            gate=gate,
            approvers=approvers,
        )

    def _context(self, run_id: int, begun: _Begun) -> tuple[StepContext, StepRunner]:
        config = begun.config
        kind = str(getattr(config, "type", ""))
        runner: StepRunner = RUNNERS.get(kind) or _Unavailable(kind)
        workdir = self.services.data_dir / "work" / f"run-{run_id}"
        workdir.mkdir(parents=True, exist_ok=True)
        context = StepContext(
            run_id=run_id,
            pipeline=begun.pipeline,
            environment=begun.environment,
            step_index=begun.step_index,
            step_name=begun.step_name,
            config=config,
            image=begun.image,
            source_registry=begun.registry,
            parameters=begun.parameters,
            author=begun.author,
            log=_LogWriter(self.services, begun.step_id),
            workdir=workdir,
            config_dir=self.services.definitions.base_dir,
            registries=self.services.registries,
            now=self.services.clock,
            sleep=asyncio.sleep,
            gate=begun.gate,
            check_promotion=self._promotion_check(begun.environment, begun.image),
            base_env=self.services.base_env,
            approvers=begun.approvers,
            secret=self._secret,
            track_process=_ProcessRecorder(self.services, begun.step_id, worker=self.name),
        )
        return context, runner

    def _secret(self, name: str) -> Secret | None:
        value = self.services.environ.get(name)
        return Secret(value) if value else None

    def _promotion_check(
        self, environment: str | None, image: PinnedImage | None
    ) -> Callable[[], gates.Decision] | None:
        if environment is None or image is None:
            return None
        digest = image.digest

        def check() -> gates.Decision:
            with unit_of_work(self.services.engine, read_only=True) as session:
                return environments.check(session, self.services, digest, environment)

        return check


def _dry(outcome: Succeeded) -> bool:
    return outcome.output.get("dry_run") == "true"


def _stop_command(recorded: processes.CommandProcess | None) -> str:
    """Stop a dead worker's command if it runs here; what happened, for the step's log."""
    if recorded is None:
        return "the interrupted worker's command record is unreadable: its command was not checked"
    pid = recorded.pid
    here = processes.this_host()
    finding = processes.Finding.ELSEWHERE if here is None else processes.find(recorded, here)
    if finding == processes.Finding.ELSEWHERE:
        return (
            f"the orphaned command (pid {pid}) of the interrupted worker may still run on host "
            f"{recorded.host.name}: this worker cannot see it there, an operator must check"
        )
    if finding == processes.Finding.ENDED:
        return f"the interrupted worker's command (pid {pid}) is no longer running"
    stopped = processes.stop_group(pid)
    if stopped == processes.Stopped.SURVIVED:
        return (
            f"the orphaned command (pid {pid}) of the interrupted worker could not be stopped: "
            f"its process group is still alive after SIGKILL"
        )
    how = "SIGTERM" if stopped == processes.Stopped.TERMINATED else "SIGKILL"
    return (
        f"stopped the orphaned command (pid {pid}) left running by the interrupted worker "
        f"({how} to its process group)"
    )


class _LogWriter:
    """Writes each line as it comes, in its own transaction, so followers see it live."""

    def __init__(self, services: Services, step_id: int) -> None:
        self.services = services
        self.step_id = step_id

    def __call__(self, line: str, *, stream: str = "stdout") -> None:
        with unit_of_work(self.services.engine) as session:
            logs.append_log(
                session,
                self.step_id,
                [line],
                stream=stream if stream in ("stdout", "stderr") else "system",
                now=self.services.clock(),
            )


class _ProcessRecorder:
    """Commits which command a step has running (see engine.processes), while the run is ours."""

    def __init__(self, services: Services, step_id: int, *, worker: str) -> None:
        self.services = services
        self.step_id = step_id
        self.worker = worker
        self.recorded = False

    def __call__(self, pid: int | None) -> None:
        record = None
        if pid is not None:
            identity = processes.identify(pid)
            if identity is None:
                return  # ended already, or not on Linux: nothing to stop later
            record = identity.to_json()
        elif not self.recorded:
            return
        with unit_of_work(self.services.engine) as session:
            # Not written once another worker holds the run: its record is its own.
            written = store_runs.set_step_process(session, self.step_id, record, worker=self.worker)
        self.recorded = written and record is not None


class _Unavailable:
    kind: ClassVar[str] = "unavailable"
    default_timeout: ClassVar[timedelta | None] = None
    error_threshold: ClassVar[int] = 1

    def __init__(self, kind: str) -> None:
        self.step_kind = kind

    async def run(self, step: StepContext) -> Succeeded:
        raise StepFailed(
            f"step type '{self.step_kind}' is accepted in config but has no runner in this "
            f"version of Conveyor (runners: {', '.join(RUNNERS)})"
        )
