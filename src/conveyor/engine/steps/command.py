"""`command`: a shell command with the run's image in its environment."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from conveyor.config.steps import CommandStep, StepCommon
from conveyor.core import durations, templates
from conveyor.core.errors import StepFailed
from conveyor.core.runs import StepOutcome, Succeeded
from conveyor.engine.context import StepContext
from conveyor.engine.steps._process import run_process


def timeout_of(config: StepCommon, default: timedelta | None) -> float | None:
    """The step's timeout in seconds: its own, else the runner's default."""
    if config.timeout is not None:
        return durations.parse_duration(config.timeout).total_seconds()
    return default.total_seconds() if default is not None else None


def render(template: str, step: StepContext) -> str:
    """Fill ${PARAM} placeholders from the run's parameters and context."""
    try:
        return templates.render(template, step.environ())
    except templates.TemplateError as exc:
        raise StepFailed(str(exc)) from None


class CommandRunner:
    kind: ClassVar[str] = "command"
    default_timeout: ClassVar[timedelta | None] = timedelta(hours=1)
    error_threshold: ClassVar[int] = 1

    async def run(self, step: StepContext) -> StepOutcome:
        config = step.config
        assert isinstance(config, CommandStep)
        env = step.environ()
        env.update({k: render(v, step) for k, v in config.env.items()})
        cwd = step.workdir / config.workdir if config.workdir else step.workdir
        code = await run_process(
            config.run,
            env=env,
            cwd=cwd,
            log=step.log,
            timeout=timeout_of(config, self.default_timeout),
            what="command",
            track=step.track_process,
        )
        if code != 0:
            raise StepFailed(f"command exited with code {code}")
        return Succeeded(output={"exit_code": "0"})
