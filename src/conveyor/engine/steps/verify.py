"""`verify`: an HTTP probe (status and optional body regex, with retries) or a command."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import httpx
import re2

from conveyor.config.steps import VerifyStep
from conveyor.core import durations
from conveyor.core.errors import StepFailed
from conveyor.core.runs import StepOutcome, Succeeded
from conveyor.engine.context import StepContext
from conveyor.engine.steps._process import run_process
from conveyor.engine.steps.command import render, timeout_of


class VerifyRunner:
    kind: ClassVar[str] = "verify"
    default_timeout: ClassVar[timedelta | None] = timedelta(minutes=15)
    error_threshold: ClassVar[int] = 1

    async def run(self, step: StepContext) -> StepOutcome:
        config = step.config
        assert isinstance(config, VerifyStep)
        if config.run is not None:
            code = await run_process(
                config.run,
                env=step.environ(),
                cwd=step.workdir,
                log=step.log,
                timeout=timeout_of(config, self.default_timeout),
                what="verify command",
                track=step.track_process,
            )
            if code != 0:
                raise StepFailed(f"verify command exited with code {code}")
            return Succeeded(output={"exit_code": "0"})
        assert config.http is not None
        return await self._http(step, config)

    async def _http(self, step: StepContext, config: VerifyStep) -> StepOutcome:
        check = config.http
        assert check is not None
        url = render(check.url, step)
        interval = durations.parse_duration(check.interval).total_seconds()
        pattern = re2.compile(check.body_regex) if check.body_regex else None
        last = ""
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=True) as client:
            for attempt in range(1, check.retries + 2):
                try:
                    response = await client.get(url)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code != check.expect_status:
                        last = f"status {response.status_code}, expected {check.expect_status}"
                    elif pattern is not None and not pattern.search(response.text):
                        last = f"body does not match /{check.body_regex}/"
                    else:
                        step.log(f"GET {url}: {response.status_code} (attempt {attempt})")
                        return Succeeded(output={"status": str(response.status_code)})
                step.log(f"GET {url}: {last} (attempt {attempt} of {check.retries + 1})")
                if attempt <= check.retries:
                    await step.sleep(interval)
        raise StepFailed(f"verify {url} failed after {check.retries + 1} attempts: {last}")
