"""Poll state per artifact source: what the last poll saw, for conditional requests next time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from conveyor.core.images import Digest
from conveyor.core.polling import PollState, Validators
from conveyor.store.tables import SourcePoll


def load_poll_state(session: Session, source: str) -> PollState | None:
    """What the last poll of `source` saw, or None if it was never polled."""
    row = session.get(SourcePoll, source)
    if row is None:
        return None
    return PollState(
        rule=row.rule,
        tags=Validators(etag=row.tags_etag, last_modified=row.tags_last_modified),
        tag=row.tag,
        digest=Digest.parse(row.digest) if row.digest else None,
        manifest_etag=row.manifest_etag,
    )


def save_poll_state(session: Session, source: str, state: PollState, *, now: datetime) -> None:
    """Record a poll of `source` (``changed_at`` moves only when the version found moved)."""
    values = {
        "rule": state.rule,
        "tags_etag": state.tags.etag,
        "tags_last_modified": state.tags.last_modified,
        "tag": state.tag,
        "digest": str(state.digest) if state.digest else None,
        "manifest_etag": state.manifest_etag,
        "polled_at": now,
    }
    row = session.get(SourcePoll, source)
    if row is None:
        session.add(SourcePoll(source=source, changed_at=now, **values))
        return
    if (row.tag, row.digest) != (values["tag"], values["digest"]):
        row.changed_at = now
    for key, value in values.items():
        setattr(row, key, value)
