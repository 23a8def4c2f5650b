"""`approval`: the manual gate ("verification passed")."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from conveyor.config.steps import ApprovalStep
from conveyor.core import gates
from conveyor.core.errors import StepFailed
from conveyor.core.runs import StepOutcome, Succeeded, Waiting
from conveyor.engine.context import StepContext


class ApprovalRunner:
    kind: ClassVar[str] = "approval"
    default_timeout: ClassVar[timedelta | None] = None
    error_threshold: ClassVar[int] = 1

    async def run(self, step: StepContext) -> StepOutcome:
        config = step.config
        assert isinstance(config, ApprovalStep) and step.gate is not None
        rule = config.rule()
        decisions = step.gate.decisions
        verdict = gates.evaluate(rule, decisions, opened_at=step.gate.opened_at, now=step.now())
        match verdict:
            case gates.Verdict.APPROVED:
                approvers = sorted({d.user for d in decisions if d.approved})
                return Succeeded(output={"approved_by": ", ".join(approvers)})
            case gates.Verdict.REJECTED:
                rejection = next(d for d in decisions if not d.approved)
                comment = f": {rejection.comment}" if rejection.comment else ""
                raise StepFailed(f"'{step.step_name}' rejected by {rejection.user}{comment}")
            case gates.Verdict.EXPIRED:
                raise StepFailed(
                    f"'{step.step_name}' expired after {config.expires} without approval"
                )
            case gates.Verdict.WAITING:
                have = len({d.user for d in decisions if d.approved})
                who = _who(rule)
                return Waiting(
                    reason=f"'{step.step_name}' needs {rule.required - have} more approval(s)"
                    f"{who}: conveyor approve {step.run_id}"
                )


def _who(rule: gates.ApprovalRule) -> str:
    names = [*rule.users, *(f"group {g}" for g in rule.groups)]
    return f" from {', '.join(names)}" if names else ""
