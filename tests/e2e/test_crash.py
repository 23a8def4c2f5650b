"""Crash safety with real processes: kill -9 the worker and start another one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = textwrap.dedent(
    """\
    environments:
      - name: test
    pipelines:
      slow-command:
        steps:
          - {name: long job, type: command, run: "echo started; sleep 60; echo done"}
      gated:
        steps:
          - {name: verification passed, type: approval, allow_author: true}
          - {name: after, type: command, run: "echo approved"}
    """
)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    (tmp_path / "conveyor.yaml").write_text(CONFIG)
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
        "CONVEYOR_USER": "ann",
        "CONVEYOR_WORKER_LEASE": "1",
    }
    workers: list[subprocess.Popen[str]] = []

    def run(*args: str, background: bool = False) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "conveyor.cli", *args]
        if background:
            workers.append(
                subprocess.Popen(
                    command,
                    env=env,
                    text=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            return subprocess.CompletedProcess(command, 0, "", "")
        return subprocess.run(
            command, env=env, text=True, capture_output=True, timeout=60, check=False
        )

    run.workers = workers  # type: ignore[attr-defined]
    yield run
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def _show(cli: Callable[..., subprocess.CompletedProcess[str]], run_id: int) -> dict:
    done = cli("runs", "show", str(run_id), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _start(cli: Callable[..., subprocess.CompletedProcess[str]], pipeline: str) -> int:
    done = cli("run", pipeline, "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


def test_killed_during_a_command_step_fails_it_as_interrupted(cli) -> None:  # type: ignore[no-untyped-def]
    """A non-idempotent step running when its worker is killed fails with reason 'interrupted'."""
    run_id = _start(cli, "slow-command")
    cli("worker", "--poll", "0.2", background=True)
    _wait_for(lambda: _show(cli, run_id)["steps"][0]["status"] == "running", "the step to run")
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert _show(cli, run_id)["status"] == "running"

    cli("worker", "--poll", "0.2", background=True)
    _wait_for(lambda: _show(cli, run_id)["status"] == "failed", "the run to fail")
    view = _show(cli, run_id)
    assert view["steps"][0]["status"] == "failed"
    assert view["steps"][0]["reason"].startswith("interrupted")
    assert view["steps"][0]["attempt"] == 1


def test_killed_while_a_gate_waits_keeps_waiting(cli) -> None:  # type: ignore[no-untyped-def]
    """A gate waiting when its worker is killed keeps waiting, and a new worker finishes the run."""
    run_id = _start(cli, "gated")
    cli("worker", "--poll", "0.2", background=True)
    _wait_for(lambda: _show(cli, run_id)["status"] == "waiting", "the gate to wait")
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    cli("worker", "--poll", "0.2", background=True)
    time.sleep(1.5)
    assert _show(cli, run_id)["status"] == "waiting"
    approved = cli("approve", str(run_id), "--comment", "verification passed")
    assert approved.returncode == 0, approved.stderr
    _wait_for(lambda: _show(cli, run_id)["status"] == "succeeded", "the run to succeed")
    view = _show(cli, run_id)
    assert [s["status"] for s in view["steps"]] == ["succeeded", "succeeded"]
    assert view["approvals"][0]["user"] == "ann"
    assert view["approvals"][0]["comment"] == "verification passed"
