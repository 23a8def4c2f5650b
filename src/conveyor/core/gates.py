"""Gates as pure predicates: may this digest enter this environment, does this approval count.

The engine, the CLI (and later the API and UI) all ask these same functions,
so a refusal reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from conveyor.core.images import Digest


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationRecord:
    """The fact "digest D passed environment E at time T, in run R, approved by P"."""

    digest: Digest
    environment: str
    run_id: int
    verified_at: datetime
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BadDigest:
    """A digest blocked from every environment until cleared."""

    digest: Digest
    reason: str
    marked_by: str


@dataclass(frozen=True, slots=True)
class Allowed:
    """The promotion may go ahead."""

    @property
    def allowed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Refused:
    """The promotion is refused; each reason says what is missing."""

    reasons: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return False


Decision = Allowed | Refused


def can_deploy(
    digest: Digest,
    *,
    environment: str,
    requires: Sequence[str],
    records: Iterable[VerificationRecord],
    bad: Iterable[BadDigest] = (),
) -> Decision:
    """Whether ``digest`` may be deployed to ``environment``.

    Refused when the digest is marked bad, or lacks a verification record
    from any environment that ``environment`` requires.
    """
    reasons: list[str] = []
    for mark in bad:
        if mark.digest == digest:
            reasons.append(
                f"{digest} is marked bad by {mark.marked_by}: {mark.reason}; "
                "clear the mark before deploying it anywhere"
            )
    verified_in = sorted({r.environment for r in records if r.digest == digest})
    for required in requires:
        if required not in verified_in:
            seen = ", ".join(verified_in) if verified_in else "nowhere"
            reasons.append(
                f"environment '{environment}' refuses {digest}: not verified in "
                f"'{required}' (verified in: {seen})"
            )
    return Refused(tuple(reasons)) if reasons else Allowed()


class Verdict(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRule:
    """Who may decide a manual gate, and how many approvals it needs."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    required: int = 1
    allow_author: bool = False
    expires_after: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalDecision:
    """One recorded decision on a gate."""

    user: str
    approved: bool
    comment: str = ""
    decided_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Approver:
    """Who is acting, with the groups they belong to."""

    user: str
    groups: frozenset[str] = field(default_factory=frozenset)


def may_decide(rule: ApprovalRule, approver: Approver, *, author: str) -> str | None:
    """None if ``approver`` may decide on the gate, else the reason they may not."""
    if approver.user == author and not rule.allow_author:
        return (
            f"'{approver.user}' started this run and the gate forbids the author's approval "
            "(allow_author: false); ask another approver"
        )
    if not rule.users and not rule.groups:
        return None
    if approver.user in rule.users or approver.groups & set(rule.groups):
        return None
    allowed = [*(f"user {u}" for u in rule.users), *(f"group {g}" for g in rule.groups)]
    return f"'{approver.user}' may not decide this gate; allowed: {', '.join(allowed)}"


def evaluate(
    rule: ApprovalRule,
    decisions: Sequence[ApprovalDecision],
    *,
    opened_at: datetime,
    now: datetime,
) -> Verdict:
    """The state of a gate from its decisions: one rejection rejects; N distinct approvals pass."""
    if any(not d.approved for d in decisions):
        return Verdict.REJECTED
    approvers = {d.user for d in decisions if d.approved}
    if len(approvers) >= rule.required:
        return Verdict.APPROVED
    if rule.expires_after is not None and now >= opened_at + rule.expires_after:
        return Verdict.EXPIRED
    return Verdict.WAITING
