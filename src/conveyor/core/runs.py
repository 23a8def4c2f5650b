"""Runs and steps: their states and the transitions allowed between them.

A run fixes its image when it starts and then moves
queued → running ⇄ waiting → succeeded | failed | cancelled.
The functions here decide; the service persists and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conveyor.core.images import PinnedImage


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STEP_STATES


TERMINAL_RUN_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
TERMINAL_STEP_STATES = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.WAITING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.QUEUED,
        }
    ),
    RunStatus.WAITING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.WAITING,
            RunStatus.QUEUED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
        }
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    """Whether a run may move from ``current`` to ``target``."""
    return target in RUN_TRANSITIONS[current]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    """What the engine needs to know of one step to decide what comes next."""

    index: int
    status: StepStatus


def next_step(steps: list[StepState]) -> int | None:
    """The index of the first step not yet finished, or None when all are."""
    for step in steps:
        if not step.status.is_terminal:
            return step.index
    return None


def fold(steps: list[StepState]) -> RunStatus:
    """The run status the step states add up to."""
    if any(s.status == StepStatus.FAILED for s in steps):
        return RunStatus.FAILED
    if any(s.status == StepStatus.CANCELLED for s in steps):
        return RunStatus.CANCELLED
    if any(s.status == StepStatus.WAITING for s in steps):
        return RunStatus.WAITING
    if all(s.status.is_terminal for s in steps):
        return RunStatus.SUCCEEDED
    return RunStatus.RUNNING


# Step kinds that may run again after a crash: running them twice has the same effect
# as running them once (a deploy of the same digest, a verification probe).
IDEMPOTENT_STEP_KINDS = frozenset({"deploy", "verify"})


def recover_step(kind: str) -> StepStatus:
    """What a step found `running` after a crash becomes: re-run if idempotent, else failed."""
    return StepStatus.PENDING if kind in IDEMPOTENT_STEP_KINDS else StepStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class Succeeded:
    """The step did its work; ``output`` is shown and stored, ``image`` replaces the run's."""

    output: dict[str, str]
    image: PinnedImage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """The step waits (a gate); the engine asks again when something changes or later."""

    reason: str


StepOutcome = Succeeded | Waiting
