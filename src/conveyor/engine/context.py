"""What a step runner is given: the run's facts and the few capabilities it may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from conveyor.config.steps import StepCommon
from conveyor.core import gates
from conveyor.core.credentials import Secret
from conveyor.core.images import PinnedImage
from conveyor.service.context import Registries


class LogSink(Protocol):
    """Appends one line to the step's log (durably, so `logs --follow` sees it)."""

    def __call__(self, line: str, *, stream: str = "stdout") -> None: ...


class ProcessSink(Protocol):
    """Records durably the pid of the command the step has running, or None once it ended.

    A worker taking the run over after this one was killed reads it to stop
    the command left running (see engine.processes).
    """

    def __call__(self, pid: int | None) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GateFacts:
    """An approval gate's recorded decisions and when it opened."""

    decisions: tuple[gates.ApprovalDecision, ...]
    opened_at: datetime


@dataclass(kw_only=True)
class StepContext:
    """Everything one step execution may know and use."""

    run_id: int
    pipeline: str
    environment: str | None
    step_index: int
    step_name: str
    config: StepCommon
    image: PinnedImage | None
    source_registry: str | None
    parameters: Mapping[str, str]
    author: str
    log: LogSink
    workdir: Path
    registries: Registries
    now: Callable[[], datetime]
    sleep: Callable[[float], Awaitable[None]]
    # Relative paths in the step's config (a build context) are relative to the config files.
    config_dir: Path = field(default_factory=Path)
    gate: GateFacts | None = None
    # Who approved this run's gates so far (GitOps commit messages name them).
    approvers: tuple[str, ...] = ()
    # Reads a secret the config names by environment variable (never logged).
    secret: Callable[[str], Secret | None] = field(default=lambda name: None)
    check_promotion: Callable[[], gates.Decision] | None = None
    # The inherited part of the process environment (PATH, HOME, ...), chosen by settings.
    base_env: Mapping[str, str] = field(default_factory=dict)
    # Where commands' processes are recorded while they run (nowhere by default).
    track_process: ProcessSink = field(default=lambda pid: None)

    def environ(self) -> dict[str, str]:
        """The run's context as environment variables for commands and builders."""
        env = {
            **self.base_env,
            "CONVEYOR_RUN_ID": str(self.run_id),
            "CONVEYOR_PIPELINE": self.pipeline,
            "CONVEYOR_STEP": self.step_name,
        }
        if self.environment:
            env["CONVEYOR_ENVIRONMENT"] = self.environment
        if self.image is not None:
            env["CONVEYOR_IMAGE"] = str(self.image)
            env["CONVEYOR_DIGEST"] = str(self.image.digest)
            env["CONVEYOR_REPOSITORY"] = self.image.repository.name
            env["CONVEYOR_REGISTRY"] = self.image.repository.registry
            env["CONVEYOR_TAG"] = self.image.tag or ""
        env.update(self.parameters)
        return env
