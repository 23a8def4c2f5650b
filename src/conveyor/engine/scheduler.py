"""Pollers, schedules and the trigger sweep: singletons across every Conveyor process.

Each `poll:` source and each `schedule:` trigger is one job. A process runs
a job only while it holds the job's singleton lock (a PostgreSQL advisory
lock, or a lease row on SQLite; see store/claims.py), so with any number of
`conveyor serve` / `conveyor worker` processes exactly one polls a source and
exactly one fires a schedule. A poll starts a run only for a digest no run of
that pipeline has taken yet, so a takeover after a crash does not start the
same version twice. How a poll asks the registry (conditional requests, the
state kept between polls) is service/polling.py's; after a registry error
the next poll waits twice as long (up to 16 intervals) and never sooner than
the registry's ``Retry-After``; a successful poll resets the interval.

One more singleton job exists when any pipeline has a `pipeline:` trigger:
every ``FOLLOW_UP_INTERVAL`` it handles the triggers of runs that ended while
their worker could not (``triggers.follow_up``). And with an event retention
(``--event-retention``), one deletes old inbox events every ``PRUNE_INTERVAL``
(``events.prune``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from croniter import croniter

from conveyor import aio
from conveyor.core import durations
from conveyor.core.errors import ConveyorError, IntegrationError
from conveyor.core.images import PinnedImage
from conveyor.service import events, polling, runs, triggers
from conveyor.service.context import Services
from conveyor.store import claims, tables
from conveyor.store.database import unit_of_work

log = structlog.get_logger("conveyor.scheduler")

# How long a singleton lease lives on SQLite without renewal (renewed every tick).
SINGLETON_TTL = timedelta(seconds=30)
# After a registry error (429, 5xx), wait this many intervals, doubling up to the cap.
MAX_BACKOFF_FACTOR = 16
# A Retry-After longer than this is not believed (a broken header must not stop polling).
MAX_RETRY_AFTER = timedelta(hours=6)
# How often the sweep looks for `pipeline:` triggers left due (service/triggers.py).
FOLLOW_UP_INTERVAL = timedelta(seconds=15)
# With --event-retention: how often old events are deleted, and who the audit log names.
PRUNE_INTERVAL = timedelta(hours=1)
PRUNE_IDENTITY = "event-retention"


@dataclass
class Job:
    """One poller or schedule, with when it is next due."""

    name: str
    kind: str  # "poll", "schedule", "follow-up" or "prune"
    source: str | None = None
    pipelines: list[str] = field(default_factory=list)
    cron: str | None = None
    interval: timedelta = timedelta(minutes=5)
    next_at: datetime | None = None
    backoff: int = 1
    lock: claims.SingletonLock | None = None


def jobs_of(services: Services) -> list[Job]:
    """Every poller (one per source, shared by its pipelines) and schedule, and the sweep."""
    polls: dict[str, Job] = {}
    schedules: list[Job] = []
    for name, pipeline in services.definitions.pipelines.items():
        for index, trigger in enumerate(pipeline.triggers):
            if trigger.poll is not None:
                interval = durations.parse_duration(trigger.poll.interval)
                job = polls.setdefault(
                    trigger.poll.source,
                    Job(
                        name=f"poll:{trigger.poll.source}",
                        kind="poll",
                        source=trigger.poll.source,
                        interval=interval,
                    ),
                )
                job.pipelines.append(name)
                job.interval = min(job.interval, interval)
            if trigger.schedule is not None:
                schedules.append(
                    Job(
                        name=f"schedule:{name}#{index}",
                        kind="schedule",
                        pipelines=[name],
                        cron=trigger.schedule.cron,
                    )
                )
    jobs = [*polls.values(), *schedules]
    if triggers.awaited_pipelines(services.definitions):
        jobs.append(Job(name="pipeline-triggers", kind="follow-up", interval=FOLLOW_UP_INTERVAL))
    if services.event_retention is not None:
        jobs.append(Job(name="event-retention", kind="prune", interval=PRUNE_INTERVAL))
    return jobs


@dataclass
class Scheduler:
    """Runs the jobs this process holds the singleton lock of."""

    services: Services
    owner: str
    jobs: list[Job] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.jobs:
            self.jobs = jobs_of(self.services)

    def held(self) -> list[str]:
        """Names of the jobs this process runs now."""
        return [job.name for job in self.jobs if job.lock is not None]

    def tick(self) -> list[int]:
        """Take free jobs, run the due ones; returns the runs started."""
        started: list[int] = []
        for job in self.jobs:
            now = self.services.clock()
            if not self._hold(job, now):
                continue
            if job.next_at is None:
                job.next_at = self._next_fire(job, now) if job.kind == "schedule" else now
            if now < job.next_at:
                continue
            started.extend(self._run(job, now))
        return started

    def release(self) -> None:
        """Let other processes take this process's jobs."""
        for job in self.jobs:
            if job.lock is not None:
                job.lock.release()
                job.lock = None

    def _hold(self, job: Job, now: datetime) -> bool:
        if job.lock is not None and job.lock.is_held(now=now):
            return True
        job.lock = claims.try_acquire_singleton(
            self.services.engine, job.name, owner=self.owner, ttl=SINGLETON_TTL, now=now
        )
        job.next_at = None
        return job.lock is not None

    def _next_fire(self, job: Job, now: datetime) -> datetime:
        assert job.cron is not None
        fire: datetime = croniter(job.cron, now).get_next(datetime)
        return fire

    def _run(self, job: Job, now: datetime) -> list[int]:
        if job.kind == "prune":
            job.next_at = now + job.interval
            self._prune()
            return []
        if job.kind == "follow-up":
            job.next_at = now + job.interval
            return triggers.follow_up(self.services, now=now)
        if job.kind == "schedule":
            job.next_at = self._next_fire(job, now)
            fired = [self._start(pipeline, trigger="schedule") for pipeline in job.pipelines]
            return [run_id for run_id in fired if run_id is not None]
        wait = job.interval
        try:
            started = self._poll(job)
        except IntegrationError as error:
            job.backoff = min(job.backoff * 2, MAX_BACKOFF_FACTOR)
            wait = job.interval * job.backoff
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                # The registry said when to come back (429/503 Retry-After): not sooner.
                wait = max(wait, min(timedelta(seconds=retry_after), MAX_RETRY_AFTER))
            log.warning(
                "poll failed; backing off",
                job=job.name,
                error=str(error),
                next_in=str(wait),
            )
            started = []
        except ConveyorError as error:  # e.g. the default tag is refused by the filter
            log.info("poll found nothing to run", job=job.name, reason=str(error))
            job.backoff = 1
            started = []
        else:
            job.backoff = 1
        job.next_at = now + wait
        return started

    def _prune(self) -> None:
        retention = self.services.event_retention
        assert retention is not None, "the prune job exists only with a retention"
        try:
            pruned = events.prune(self.services, older_than=retention, user=PRUNE_IDENTITY)
        except ConveyorError as error:  # e.g. the database is unavailable: next hour
            log.warning("event retention failed", error=str(error))
            return
        if pruned.deleted:
            log.info(
                "old events deleted",
                deleted=pruned.deleted,
                received_before=pruned.before.isoformat(),
            )

    def _poll(self, job: Job) -> list[int]:
        assert job.source is not None
        outcome = aio.run(polling.poll_source(self.services, job.source))
        if outcome.image is None:
            log.info("poll found nothing to run", job=job.name, reason=outcome.reason)
            return []
        log.debug("polled", job=job.name, changed=outcome.changed, reason=outcome.reason)
        started = []
        for pipeline in job.pipelines:
            # Also when nothing changed: a start refused before is tried again.
            if self._has_run_for(pipeline, str(outcome.image.digest)):
                continue
            # The poll's digest, not a second look at the tag: what the poll saw is what runs.
            run_id = self._start(
                pipeline, trigger="poll", tag=outcome.image.tag, pushed=outcome.image
            )
            if run_id is not None:
                started.append(run_id)
        return started

    def _has_run_for(self, pipeline: str, digest: str) -> bool:
        with unit_of_work(self.services.engine, read_only=True) as session:
            return (
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(tables.Run)
                    .where(tables.Run.pipeline == pipeline, tables.Run.image_digest == digest)
                )
                != 0
            )

    def _start(
        self,
        pipeline: str,
        *,
        trigger: str,
        tag: str | None = None,
        pushed: PinnedImage | None = None,
    ) -> int | None:
        try:
            return runs.start_run(
                self.services,
                runs.RunRequest(
                    pipeline=pipeline,
                    tag=tag,
                    user=trigger,
                    trigger=trigger,
                    pushed=pushed,
                    pushed_from=trigger,
                ),
            )
        except ConveyorError as error:
            log.warning("trigger refused", pipeline=pipeline, trigger=trigger, reason=str(error))
            return None
