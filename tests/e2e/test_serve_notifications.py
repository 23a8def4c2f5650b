"""A real docker-registry notifies a real `conveyor serve`: pushes trigger pipelines, by tag rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import _free_port, _require, push_image
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
SECRET = "e2e-webhook-secret-value"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A registry whose notifications go to `conveyor serve`; both on 127.0.0.1."""
    _require("docker-registry", "skopeo", "buildah")
    registry = f"127.0.0.1:{_free_port()}"
    port = _free_port()
    (tmp_path / "registry.yml").write_text(
        textwrap.dedent(
            f"""\
            version: 0.1
            log: {{level: error}}
            storage:
              filesystem: {{rootdirectory: {tmp_path / "data"}}}
            http:
              addr: {registry}
            notifications:
              events: {{includereferences: true}}
              endpoints:
                - name: conveyor
                  url: http://127.0.0.1:{port}/hooks/registry
                  headers: {{Authorization: [Bearer {SECRET}]}}
                  timeout: 2s
                  threshold: 5
                  backoff: 1s
            """
        )
    )
    (tmp_path / "conveyor.yaml").write_text(
        textwrap.dedent(
            f"""\
            registries:
              main: {{url: "http://{registry}", tls: {{insecure: true}}}}
            environments:
              - name: pre-release
            sources:
              myapp: {{registry: main, repository: team/myapp, filter: {{glob: "myapp-V*"}}}}
            webhooks:
              registry: {{format: distribution, registry: main, secret_env: HOOK_SECRET}}
            pipelines:
              prerelease-cd:
                environment: pre-release
                source: {{artifact: myapp}}
                triggers:
                  - registry_event: {{source: myapp, webhook: registry, events: [push],
                                      tag: "^myapp-V.*"}}
                steps:
                  - {{type: deploy, deployer: registry-tag, with: {{tag: pre-release}}}}
            """
        )
    )
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONVEYOR_DATA_DIR": str(tmp_path / "work"),
        "HOOK_SECRET": SECRET,
    }
    server_log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "--debug",
            "serve",
            "--port",
            str(port),
            "--poll",
            "0.2",
        ],
        env=env,
        stdout=server_log,
        stderr=server_log,
    )
    registry_process = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "registry.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if "--json" in args else done.stdout

    try:
        wait_until(lambda: _listening(port) and _listening(int(registry.split(":")[1])), "servers")
        yield {"registry": registry, "cli": cli, "workdir": tmp_path, "server": server}
    finally:
        registry_process.terminate()
        server.terminate()
        registry_process.wait(timeout=10)
        server.wait(timeout=30)
        server_log.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_registry_push_triggers_prerelease_only_for_matching_tags(stack: dict[str, Any]) -> None:
    """Pushing myapp-V1.2.0 starts the pre-release pipeline; other-1.0, blobs and pulls do not."""
    cli: Callable[..., Any] = stack["cli"]
    digest = push_image(stack["registry"], "team/myapp:myapp-V1.2.0", "1.2.0", stack["workdir"])
    wait_until(
        lambda: any(r["status"] == "succeeded" for r in cli("runs", "list", "--json")),
        "the triggered run to succeed",
    )
    [run] = cli("runs", "list", "--json")
    assert (run["pipeline"], run["tag"], run["digest"]) == ("prerelease-cd", "myapp-V1.2.0", digest)
    assert run["trigger"] == "registry_event"

    push_image(stack["registry"], "team/myapp:other-1.0", "other", stack["workdir"])
    wait_until(
        lambda: any(
            e["tag"] == "other-1.0" and e["status"] == "processed"
            for e in cli("events", "list", "--json")
        ),
        "the other-1.0 event",
    )
    events = cli("events", "list", "--json")
    other = next(e for e in events if e["tag"] == "other-1.0")
    assert other["outcome"]["triggers"][0]["matched"] is False
    assert (
        other["outcome"]["triggers"][0]["reason"] == "tag 'other-1.0' does not match '^myapp-V.*'"
    )
    # Blob uploads and manifest pulls were notified too, and none of them became an event.
    assert {e["kind"] for e in events} == {"push"}
    assert {e["tag"] for e in events} == {"myapp-V1.2.0", "other-1.0", "pre-release"}
    assert len(cli("runs", "list", "--json")) == 1

    # The webhook secret never shows: not in the server's output, not in any CLI output.
    shown = json.dumps([cli("events", "list", "--json"), cli("runs", "list", "--json")])
    assert SECRET not in shown
    assert SECRET not in (stack["workdir"] / "serve.log").read_text()


def test_serve_stops_in_order_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM lets serve finish requests, stop its worker and exit 0."""
    (tmp_path / "conveyor.yaml").write_text("environments:\n  - name: test\n")
    port = _free_port()
    env = {**os.environ, "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "serve",
            "--config",
            str(tmp_path / "conveyor.yaml"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: _listening(port), "serve to listen")
    server.terminate()
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "conveyor stopped; accepted events not yet processed stay in the inbox" in stderr
