"""Step logs: appended line by line, read from an offset (``conveyor runs logs --follow``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store.tables import Step, StepLog


def append_log(
    session: Session,
    step_id: int,
    lines: Sequence[str],
    *,
    stream: str = "stdout",
    now: datetime,
) -> int:
    """Append lines to a step's log; returns the seq of the last line (lines count from 1).

    One writer per step (the worker running it); a concurrent second writer
    fails on uq_step_logs_step_id_seq rather than interleaving.
    """
    last = session.scalar(sa.select(sa.func.max(StepLog.seq)).where(StepLog.step_id == step_id))
    seq = last or 0
    rows = []
    for line in lines:
        seq += 1
        rows.append({"step_id": step_id, "seq": seq, "at": now, "stream": stream, "line": line})
    if rows:
        session.execute(sa.insert(StepLog), rows)
    return seq


def read_log(
    session: Session, step_id: int, *, after_seq: int = 0, limit: int = 1000
) -> list[StepLog]:
    """A step's log lines with seq greater than `after_seq`, in order."""
    return list(
        session.scalars(
            sa.select(StepLog)
            .where(StepLog.step_id == step_id, StepLog.seq > after_seq)
            .order_by(StepLog.seq)
            .limit(limit)
        )
    )


def read_run_log(
    session: Session, run_id: int, *, after_id: int = 0, limit: int = 1000
) -> list[tuple[int, StepLog]]:
    """All steps' log lines of a run after the line id `after_id`, as (step index, line).

    Line ids only grow, so a follower passes the last id it printed.
    """
    rows = session.execute(
        sa.select(Step.index, StepLog)
        .join(Step, Step.id == StepLog.step_id)
        .where(Step.run_id == run_id, StepLog.id > after_id)
        .order_by(StepLog.id)
        .limit(limit)
    )
    return [(index, line) for index, line in rows]
