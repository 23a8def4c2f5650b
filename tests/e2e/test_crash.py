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

from tests.e2e.conftest import push_image
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

CONFIG = textwrap.dedent(
    """\
    environments:
      - name: test
    pipelines:
      slow-command:
        steps:
          - {name: long job, type: command, run: "echo started; sleep 60; echo done"}
      pid-and-sleep:
        steps:
          - {name: long job, type: command, run: "echo $$ > pid; sleep 60"}
      gated:
        steps:
          - {name: verification passed, type: approval, allow_author: true}
          - {name: after, type: command, run: "echo approved"}
    """
)


DEPLOY_CONFIG = textwrap.dedent(
    """\
    registries:
      main: {{url: "http://{registry}", tls: {{insecure: true}}}}
    environments:
      - name: test
    sources:
      myapp: {{registry: main, repository: team/myapp}}
    pipelines:
      deploy-test:
        environment: test
        source: {{artifact: myapp}}
        steps:
          - name: deploy
            type: deploy
            deployer: command
            with:
              run: >-
                echo "start $CONVEYOR_IMAGE" >> {log};
                if [ ! -f {marker} ]; then touch {marker}; sleep 60; fi;
                echo done >> {log}
    """
)


@pytest.fixture
def cli(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    config = CONFIG
    if "registry" in request.fixturenames:
        config = DEPLOY_CONFIG.format(
            registry=request.getfixturevalue("registry"),
            log=tmp_path / "deploys.log",
            marker=tmp_path / "marker",
        )
    (tmp_path / "conveyor.yaml").write_text(config)
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


def _start(cli: Callable[..., subprocess.CompletedProcess[str]], pipeline: str) -> int:
    done = cli("run", pipeline, "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


def test_killed_during_a_command_step_fails_it_as_interrupted(cli) -> None:  # type: ignore[no-untyped-def]
    """A non-idempotent step running when its worker is killed fails with reason 'interrupted'."""
    run_id = _start(cli, "slow-command")
    cli("worker", "--poll", "0.2", background=True)
    wait_until(lambda: _show(cli, run_id)["steps"][0]["status"] == "running", "the step to run")
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert _show(cli, run_id)["status"] == "running"

    cli("worker", "--poll", "0.2", background=True)
    wait_until(lambda: _show(cli, run_id)["status"] == "failed", "the run to fail")
    view = _show(cli, run_id)
    assert view["steps"][0]["status"] == "failed"
    assert view["steps"][0]["reason"].startswith("interrupted")
    assert view["steps"][0]["attempt"] == 1


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (killed, not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_command_of_a_killed_worker_is_stopped_by_the_takeover(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    """kill -9 leaves the command running; the worker taking the run over stops it first."""
    run_id = _start(cli, "pid-and-sleep")
    cli("worker", "--poll", "0.2", background=True)
    pid_file = tmp_path / "data" / "work" / f"run-{run_id}" / "pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", "the pid")
    pid = int(pid_file.read_text())
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)
    assert _alive(pid), "the command died with its worker: nothing left to test"
    try:
        cli("worker", "--poll", "0.2", background=True)
        wait_until(lambda: _show(cli, run_id)["status"] == "failed", "the run to fail")
        wait_until(lambda: not _alive(pid), "the orphaned command to be gone", timeout=10)
    finally:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    step = _show(cli, run_id)["steps"][0]
    assert (step["status"], step["attempt"]) == ("failed", 1)
    assert step["reason"].startswith("interrupted")
    logs = cli("runs", "logs", str(run_id))
    assert logs.returncode == 0, logs.stderr
    assert f"stopped the orphaned command (pid {pid})" in logs.stdout


def test_killed_while_a_gate_waits_keeps_waiting(cli) -> None:  # type: ignore[no-untyped-def]
    """A gate waiting when its worker is killed keeps waiting, and a new worker finishes the run."""
    run_id = _start(cli, "gated")
    cli("worker", "--poll", "0.2", background=True)
    wait_until(lambda: _show(cli, run_id)["status"] == "waiting", "the gate to wait")
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    cli("worker", "--poll", "0.2", background=True)
    time.sleep(1.5)
    assert _show(cli, run_id)["status"] == "waiting"
    approved = cli("approve", str(run_id), "--comment", "verification passed")
    assert approved.returncode == 0, approved.stderr
    wait_until(lambda: _show(cli, run_id)["status"] == "succeeded", "the run to succeed")
    view = _show(cli, run_id)
    assert [s["status"] for s in view["steps"]] == ["succeeded", "succeeded"]
    assert view["approvals"][0]["user"] == "ann"
    assert view["approvals"][0]["comment"] == "verification passed"


def test_killed_during_a_deploy_step_reruns_it(cli, registry: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An idempotent deploy step running when its worker is killed runs again and completes once."""
    digest = push_image(registry, "team/myapp:v1", "v1", tmp_path)
    done = cli("run", "deploy-test", "--tag", "v1", "--json")
    assert done.returncode == 0, done.stderr
    run_id = int(json.loads(done.stdout)["id"])
    cli("worker", "--poll", "0.2", background=True)
    wait_until(lambda: (tmp_path / "marker").exists(), "the deploy to start")
    first = cli.workers[0]  # type: ignore[attr-defined]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    cli("worker", "--poll", "0.2", background=True)
    wait_until(lambda: _show(cli, run_id)["status"] == "succeeded", "the run to succeed")
    view = _show(cli, run_id)
    assert view["steps"][0]["attempt"] == 2
    lines = (tmp_path / "deploys.log").read_text().splitlines()
    image = f"{registry}/team/myapp@{digest}"
    assert lines == [f"start {image}", f"start {image}", "done"]
    environment = cli("env", "show", "test", "--json")
    assert json.loads(environment.stdout)["digest"] == digest
