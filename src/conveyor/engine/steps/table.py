"""The explicit table of step runners, one per step kind the config allows."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Protocol

from conveyor.core.runs import StepOutcome
from conveyor.engine.context import StepContext
from conveyor.engine.steps.approval import ApprovalRunner
from conveyor.engine.steps.build import BuildRunner
from conveyor.engine.steps.command import CommandRunner
from conveyor.engine.steps.deploy import DeployRunner
from conveyor.engine.steps.verify import VerifyRunner


class StepRunner(Protocol):
    """Runs one kind of step: returns Succeeded or Waiting, raises StepFailed to fail for good.

    Any other exception is retried up to ``error_threshold`` times, unless its
    class says ``retryable = False``.
    """

    kind: ClassVar[str]
    default_timeout: ClassVar[timedelta | None]
    error_threshold: ClassVar[int]

    async def run(self, step: StepContext) -> StepOutcome: ...


RUNNERS: dict[str, StepRunner] = {
    "approval": ApprovalRunner(),
    "build": BuildRunner(),
    "command": CommandRunner(),
    "deploy": DeployRunner(),
    "verify": VerifyRunner(),
}
