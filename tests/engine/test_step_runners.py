"""Step runners against real subprocesses and a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import steps
from conveyor.core import gates
from conveyor.core.errors import StepFailed
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.core.runs import Succeeded, Waiting
from conveyor.engine.context import GateFacts, StepContext
from conveyor.engine.steps.table import RUNNERS

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
IMAGE = PinnedImage(
    repository=Repository("127.0.0.1:5000", "team/myapp"),
    digest=Digest.of(b"manifest"),
    tag="myapp-V1.0.0",
)


class NoRegistries:
    def client(self, name: str) -> Any:
        raise AssertionError("no registry in this test")

    def definition(self, name: str) -> Any:
        raise AssertionError("no registry in this test")

    def credentials(self, name: str) -> None:
        return None


def _context(tmp_path: Path, config: Any, **overrides: Any) -> tuple[StepContext, list[str]]:
    lines: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    values: dict[str, Any] = dict(
        run_id=7,
        pipeline="p",
        environment="pre-release",
        step_index=0,
        step_name="s",
        config=config,
        image=IMAGE,
        source_registry="main",
        parameters={"R_VERSION": "1.0.0"},
        author="ann",
        log=lambda line, stream="stdout": lines.append(f"{stream}: {line}"),
        workdir=tmp_path,
        registries=NoRegistries(),
        now=lambda: NOW,
        sleep=sleep,
        base_env={"PATH": "/usr/bin:/bin"},
    )
    values.update(overrides)
    return StepContext(**values), lines


def _run(runner: str, context: StepContext) -> Any:
    return asyncio.run(RUNNERS[runner].run(context))


class TestCommand:
    def test_environment_and_streamed_output(self, tmp_path: Path) -> None:
        """A command sees the run's image and parameters, and its output reaches the log."""
        config = steps.CommandStep(
            type="command", run='echo "$CONVEYOR_IMAGE $R_VERSION"; echo oops >&2'
        )
        context, lines = _run_with_lines("command", tmp_path, config)
        assert f"stdout: {IMAGE} 1.0.0" in lines
        assert "stderr: oops" in lines
        assert context == Succeeded(output={"exit_code": "0"})

    def test_non_zero_exit_fails(self, tmp_path: Path) -> None:
        """A non-zero exit fails the step, naming the code."""
        config = steps.CommandStep(type="command", run="exit 3")
        context, _ = _context(tmp_path, config)
        with pytest.raises(StepFailed, match="exited with code 3"):
            _run("command", context)

    def test_timeout_kills_the_command(self, tmp_path: Path) -> None:
        """A command past its timeout is killed and the step fails saying so."""
        config = steps.CommandStep(type="command", run="sleep 30", timeout="200ms")
        context, _ = _context(tmp_path, config)
        with pytest.raises(StepFailed, match=r"timed out after 0\.2s"):
            _run("command", context)


def _run_with_lines(runner: str, tmp_path: Path, config: Any) -> tuple[Any, list[str]]:
    context, lines = _context(tmp_path, config)
    return _run(runner, context), lines


class TestApproval:
    CONFIG = steps.ApprovalStep(type="approval", required=2, expires="1h")

    def _gate(self, *decisions: tuple[str, bool]) -> GateFacts:
        return GateFacts(
            decisions=tuple(
                gates.ApprovalDecision(user=u, approved=a, comment="no", decided_at=NOW)
                for u, a in decisions
            ),
            opened_at=NOW,
        )

    def test_waits_until_enough_approvals(self, tmp_path: Path) -> None:
        """The gate waits and says how many approvals are missing and how to give one."""
        context, _ = _context(tmp_path, self.CONFIG, gate=self._gate(("bob", True)))
        assert _run("approval", context) == Waiting(
            reason="'s' needs 1 more approval(s): conveyor approve 7"
        )

    def test_passes_with_distinct_approvals(self, tmp_path: Path) -> None:
        """Two distinct approvals pass the gate and are named in the output."""
        gate = self._gate(("bob", True), ("carol", True))
        context, _ = _context(tmp_path, self.CONFIG, gate=gate)
        assert _run("approval", context) == Succeeded(output={"approved_by": "bob, carol"})

    def test_rejection_fails(self, tmp_path: Path) -> None:
        """A rejection fails the gate with the rejecter and comment."""
        context, _ = _context(tmp_path, self.CONFIG, gate=self._gate(("bob", False)))
        with pytest.raises(StepFailed, match="'s' rejected by bob: no"):
            _run("approval", context)

    def test_expiry_fails(self, tmp_path: Path) -> None:
        """An undecided gate past its expiry fails."""
        later = NOW + timedelta(hours=2)
        context, _ = _context(tmp_path, self.CONFIG, gate=self._gate(), now=lambda: later)
        with pytest.raises(StepFailed, match="expired after 1h"):
            _run("approval", context)


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering 503 twice, then 200 with a version body."""
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            status = 503 if len(hits) <= 2 else 200
            body = b"version: 1.0.0"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", hits
    server.shutdown()
    server.server_close()


class TestVerify:
    def test_http_retries_until_healthy(self, tmp_path: Path, http_server: Any) -> None:
        """An HTTP check retries on a wrong status and passes once the body matches."""
        url, hits = http_server
        config = steps.VerifyStep(
            type="verify",
            http=steps.HttpCheck(url=url, body_regex=r"version: \d+", retries=3, interval="1s"),
        )
        context, lines = _context(tmp_path, config)
        assert _run("verify", context) == Succeeded(output={"status": "200"})
        assert len(hits) == 3
        assert "status 503, expected 200 (attempt 1 of 4)" in lines[0]

    def test_http_gives_up(self, tmp_path: Path, http_server: Any) -> None:
        """An HTTP check that never passes fails after its retries, with the last reason."""
        url, _ = http_server
        config = steps.VerifyStep(type="verify", http=steps.HttpCheck(url=url, retries=1))
        context, _ = _context(tmp_path, config)
        with pytest.raises(StepFailed, match="failed after 2 attempts: status 503"):
            _run("verify", context)


class TestDeploy:
    def test_refused_promotion_fails_before_deploying(self, tmp_path: Path) -> None:
        """The deploy step re-checks the gates and deploys nothing when refused."""
        marker = tmp_path / "deployed"
        config = steps.DeployStep.model_validate(
            {"type": "deploy", "deployer": "command", "with": {"run": f"touch {marker}"}}
        )
        refused = gates.Refused(("not verified in 'pre-release'",))
        context, _ = _context(tmp_path, config, check_promotion=lambda: refused)
        with pytest.raises(StepFailed, match="not verified in 'pre-release'"):
            _run("deploy", context)
        assert not marker.exists()

    def test_command_deployer_gets_the_digest_reference(self, tmp_path: Path) -> None:
        """The command deployer receives registry/repository@sha256:..., never a tag."""
        out = tmp_path / "image"
        config = steps.DeployStep.model_validate(
            {
                "type": "deploy",
                "deployer": "command",
                "with": {"run": f'echo "$CONVEYOR_IMAGE" > {out}'},
            }
        )
        context, _ = _context(tmp_path, config, check_promotion=lambda: gates.Allowed())
        outcome = _run("deploy", context)
        assert out.read_text().strip() == str(IMAGE)
        assert outcome.output["image"] == str(IMAGE)
