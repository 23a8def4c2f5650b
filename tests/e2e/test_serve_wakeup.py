"""`conveyor serve --poll 3600`: an accepted webhook still starts its run at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import _free_port, push_image
from tests.e2e.test_two_servers import _event
from tests.support.waiting import serving, wait_until

pytestmark = pytest.mark.slow
SECRET = "wakeup-secret"


def _succeeded(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT image_tag FROM runs WHERE status = 'succeeded'")
        return sorted(str(tag) for (tag,) in rows)


def test_an_event_wakes_a_server_that_polls_hourly(registry: str, tmp_path: Path) -> None:
    """After serve went idle (next look in an hour), a POSTed push still runs its pipeline."""
    tags = ["myapp-V1.0.0", "myapp-V1.1.0"]
    digests = {tag: push_image(registry, f"team/myapp:{tag}", tag, tmp_path) for tag in tags}
    (tmp_path / "conveyor.yaml").write_text(
        textwrap.dedent(
            f"""\
            registries:
              main: {{url: "http://{registry}", tls: {{insecure: true}}}}
            sources:
              myapp: {{registry: main, repository: team/myapp, filter: {{glob: "myapp-V*"}}}}
            webhooks:
              registry: {{format: distribution, registry: main, secret_env: HOOK_SECRET}}
            pipelines:
              on-push:
                source: {{artifact: myapp}}
                triggers:
                  - registry_event: {{source: myapp, events: [push], tag: "^myapp-V"}}
                steps:
                  - {{type: command, run: "true"}}
            """
        )
    )
    database = tmp_path / "state.db"
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{database}",
        "CONVEYOR_DATA_DIR": str(tmp_path / "work"),
        "HOOK_SECRET": SECRET,
    }
    port = _free_port()
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "serve", "--port", str(port), "--poll", "3600"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            wait_until(lambda: serving(port), "serve to answer")
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz")  # database and worker thread
            assert ready.json() == {
                "status": "ready",
                "checks": {"database": "ok", "worker": "running"},
            }
            headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
            for count, tag in enumerate(tags, start=1):
                body = _event(registry, tag, digests[tag], f"delivery-{tag}")
                response = httpx.post(
                    f"http://127.0.0.1:{port}/hooks/registry", content=body, headers=headers
                )
                assert response.status_code == 202, response.text
                # The first event may meet the worker's first look; the second comes after
                # the worker went idle, when only the wake-up can start it within the hour.
                wait_until(lambda count=count: len(_succeeded(database)) == count, f"run {count}")
                time.sleep(0.5)
            assert _succeeded(database) == tags
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert "background error" not in (tmp_path / "serve.log").read_text()
