"""Approvals: one decision per person per gate step of a run."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conveyor.core.errors import Conflict
from conveyor.store.tables import Approval


def record_approval(
    session: Session,
    run_id: int,
    *,
    step: str,
    user: str,
    decision: str,
    comment: str = "",
    now: datetime,
) -> Approval:
    """Record a decision; raises Conflict when `user` already decided at this step."""
    inserted = session.execute(
        sa.select(Approval.id).where(
            Approval.run_id == run_id, Approval.step == step, Approval.user == user
        )
    ).first()
    if inserted is not None:
        raise Conflict(f"{user} already decided at step '{step}' of run {run_id}")
    approval = Approval(
        run_id=run_id, step=step, user=user, decision=decision, comment=comment, decided_at=now
    )
    session.add(approval)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{user} already decided at step '{step}' of run {run_id}") from None
    return approval


def list_approvals(session: Session, run_id: int, *, step: str | None = None) -> list[Approval]:
    """Decisions on a run (optionally one step), in the order they were made."""
    query = sa.select(Approval).where(Approval.run_id == run_id)
    if step is not None:
        query = query.where(Approval.step == step)
    return list(session.scalars(query.order_by(Approval.id)))
