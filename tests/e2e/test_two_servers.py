"""Two `conveyor serve` processes on one PostgreSQL share the work without doing it twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import _free_port, push_image
from tests.support.waiting import serving, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "two-servers-secret"


def _event(registry: str, tag: str, digest: str, delivery: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "id": delivery,
                    "timestamp": "2026-11-28T10:15:42Z",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "size": 100,
                        "repository": "team/myapp",
                        "url": f"http://{registry}/v2/team/myapp/manifests/{digest}",
                        "tag": tag,
                    },
                    "request": {
                        "id": "r",
                        "addr": "127.0.0.1:1",
                        "host": registry,
                        "method": "PUT",
                        "useragent": "test",
                    },
                    "actor": {},
                    "source": {"addr": "x", "instanceID": "y"},
                }
            ]
        }
    ).encode()


def test_each_event_starts_one_run_and_one_poller_runs(
    postgres_url: str, registry: str, tmp_path: Path
) -> None:
    """Deliveries spread over two servers (with retries to both) start one run each."""
    tags = [f"myapp-V1.{n}.0" for n in range(4)]
    digests = {tag: push_image(registry, f"team/myapp:{tag}", tag, tmp_path) for tag in tags}
    (tmp_path / "conveyor.yaml").write_text(
        textwrap.dedent(
            f"""\
            registries:
              main: {{url: "http://{registry}", tls: {{insecure: true}}}}
            sources:
              myapp:
                registry: main
                repository: team/myapp
                filter: {{pattern: '^myapp-V(?P<v>.+)$', extract: '$v'}}
            webhooks:
              registry: {{format: distribution, registry: main, secret_env: HOOK_SECRET}}
            pipelines:
              on-push:
                source: {{artifact: myapp}}
                triggers:
                  - registry_event: {{source: myapp, events: [push], tag: "^myapp-V"}}
                steps:
                  - {{type: command, run: "echo $CONVEYOR_IMAGE"}}
              polled:
                source: {{artifact: myapp}}
                triggers:
                  - poll: {{source: myapp, interval: 1h}}
                steps:
                  - {{type: command, run: "true"}}
            """
        )
    )
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
        "CONVEYOR_DATABASE_URL": postgres_url,
        "CONVEYOR_DATA_DIR": str(tmp_path / "work"),
        "HOOK_SECRET": SECRET,
    }
    ports = [_free_port(), _free_port()]
    logs = [(tmp_path / f"serve-{port}.log").open("w") for port in ports]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "serve", "--port", str(port), "--poll", "0.2"],
            env=env,
            stdout=log,
            stderr=log,
        )
        for port, log in zip(ports, logs, strict=True)
    ]

    def cli(*args: str) -> list[dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result: list[dict[str, object]] = json.loads(done.stdout)
        return result

    try:
        for port in ports:
            wait_until(lambda port=port: serving(port), "serve to answer")
        headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        for index, tag in enumerate(tags):
            body = _event(registry, tag, digests[tag], f"delivery-{index}")
            for attempt in range(3):  # the registry retries, to whichever server answers
                port = ports[(index + attempt) % 2]
                response = httpx.post(
                    f"http://127.0.0.1:{port}/hooks/registry", content=body, headers=headers
                )
                assert response.status_code == 202, response.text
        wait_until(
            lambda: (
                len(
                    [
                        r
                        for r in cli("runs", "list", "--pipeline", "on-push", "--json")
                        if r["status"] == "succeeded"
                    ]
                )
                == len(tags)
            ),
            "one run per event",
        )
        wait_until(
            lambda: len(cli("runs", "list", "--pipeline", "polled", "--json")) >= 1, "the poller"
        )
        time.sleep(2)  # let both servers look again: nothing more may start
        pushed = cli("runs", "list", "--pipeline", "on-push", "--json", "--limit", "50")
        assert sorted(str(r["tag"]) for r in pushed) == sorted(tags)
        assert {str(r["digest"]) for r in pushed} == set(digests.values())
        polled = cli("runs", "list", "--pipeline", "polled", "--json")
        assert [r["tag"] for r in polled] == ["myapp-V1.3.0"]  # one poller, one run
        events = cli("events", "list", "--json", "--limit", "50")
        assert len(events) == len(tags)
        assert sorted(int(str(e["redeliveries"])) for e in events) == [2] * len(tags)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        for log in logs:
            log.close()
