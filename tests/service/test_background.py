"""The server's background worker: woken by accepted events, one registry client, gives way.

Everything runs in-process on real SQLite: the HTTP app (TestClient), the
background thread of `conveyor serve`, and a small HTTP stand-in for the
registry that counts the TCP connections it is asked to open.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conveyor import wiring
from conveyor.api.app import build_app
from conveyor.cli.server import background
from conveyor.config import loader
from conveyor.core.events import Headers
from conveyor.engine import background as engine_background
from conveyor.engine.background import Wakeup
from conveyor.engine.worker import Worker
from conveyor.service import events, queries, runs
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work
from tests.support.registry import QuietHandler, serve_http

SECRET = "background-secret"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class FakeRegistry:
    """Answers /v2/ and manifest GETs for any tag; counts connections and requests."""

    def __init__(self) -> None:
        self.connections = 0
        self.manifest_requests = 0
        self.lock = threading.Lock()

    def handler(self) -> type[QuietHandler]:
        registry = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                with registry.lock:
                    registry.connections += 1

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    self.reply(200, b"{}", {"Content-Type": "application/json"})
                    return
                with registry.lock:
                    registry.manifest_requests += 1
                self.reply(
                    200,
                    MANIFEST,
                    {
                        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                        "Docker-Content-Digest": DIGEST,
                    },
                )

            do_HEAD = do_GET

        return Handler


@pytest.fixture
def fake_registry() -> Iterator[tuple[FakeRegistry, str]]:
    registry = FakeRegistry()
    with serve_http(registry.handler()) as url:
        yield registry, url


def _config(url: str) -> str:
    return textwrap.dedent(
        f"""\
        registries:
          local: {{url: "{url}", tls: {{insecure: true}}}}
        environments:
          - name: pre-release
        sources:
          myapp: {{registry: local, repository: team/myapp, filter: {{glob: "myapp-V*"}}}}
        webhooks:
          registry: {{format: distribution, registry: local, secret_env: HOOK_SECRET}}
          hub: {{format: dockerhub, registry: local, secret_env: HOOK_SECRET}}
        pipelines:
          prerelease-cd:
            environment: pre-release
            source: {{artifact: myapp}}
            triggers:
              - registry_event: {{source: myapp, webhook: registry, events: [push], tag: "^myapp-V"}}
              - registry_event: {{source: myapp, webhook: hub, events: [push], tag: "^myapp-V"}}
            steps:
              - {{name: cheap, type: command, run: "true"}}
        """
    )


# Appended to the pipelines of _config: a run whose only step outlasts any test.
SLOW_PIPELINE = """\
  slow:
    steps:
      - {name: long deploy, type: command, run: "echo $$ > pid; sleep 60"}
  short:
    steps:
      - {name: short deploy, type: command, run: "echo $$ > pid; sleep 2"}
"""


@pytest.fixture
def services(tmp_path: Path, fake_registry: tuple[FakeRegistry, str]) -> Iterator[Services]:
    _, url = fake_registry
    (tmp_path / "conveyor.yaml").write_text(_config(url) + SLOW_PIPELINE)
    definitions = loader.load(tmp_path / "conveyor.yaml")
    built = Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        # The real wiring: ConfiguredRegistry over DistributionRegistry (httpx).
        registries=wiring.ConfiguredRegistries(definitions.registries, {}),
        data_dir=tmp_path / "data",
        environ={"HOOK_SECRET": SECRET},
    )
    yield built
    built.engine.dispose()


def _body(n: int) -> bytes:
    event = {
        "id": f"delivery-{n}",
        "timestamp": "2026-11-29T10:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": DIGEST,
            "size": len(MANIFEST),
            "repository": "team/myapp",
            "url": f"http://registry/v2/team/myapp/manifests/{DIGEST}",
            "tag": f"myapp-V1.{n}.0",
        },
        "request": {
            "id": "r",
            "addr": "127.0.0.1:1",
            "host": "x",
            "method": "PUT",
            "useragent": "t",
        },
        "actor": {},
        "source": {"addr": "x", "instanceID": "y"},
    }
    return json.dumps({"events": [event]}).encode()


def _hub_body(n: int) -> bytes:
    """A Docker Hub push: a tag and no digest, so the worker resolves it in the registry."""
    push = {"pushed_at": 1764410400 + n, "pusher": "ci", "tag": f"myapp-V1.{n}.0"}
    repository = {"repo_name": "team/myapp", "namespace": "team", "name": "myapp"}
    return json.dumps({"push_data": push, "repository": repository}).encode()


HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
}


class ObservedWakeup(Wakeup):
    """A Wakeup that tells the test when the worker has gone to sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = threading.Event()

    def wait(self, timeout: float) -> bool:
        self.sleeping.set()
        woken = super().wait(timeout)
        self.sleeping.clear()
        return woken


def _first_steps_started(services: Services) -> int:
    with unit_of_work(services.engine, read_only=True) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(tables.Step)
                .where(tables.Step.index == 0, tables.Step.started_at.is_not(None))
            )
            or 0
        )


def _succeeded(services: Services) -> int:
    with unit_of_work(services.engine, read_only=True) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(tables.Run)
                .where(tables.Run.status == "succeeded")
            )
            or 0
        )


def _until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serving(services: Services) -> Iterator[tuple[TestClient, ObservedWakeup]]:
    """`conveyor serve` in-process: the app wired to wake a background thread polling hourly.

    The worker drives two runs at once (`conveyor serve` defaults to four).
    """
    wakeup = ObservedWakeup()
    stop = threading.Event()
    # A short lease: a running step notices a cancel at each renewal (a third of it).
    worker = Worker(services=services, name="bg", concurrency=2, lease=timedelta(seconds=3))
    thread = threading.Thread(
        target=background, args=(services, worker, stop, 3600.0, wakeup), daemon=True
    )
    thread.start()
    try:
        with TestClient(
            build_app(services, on_accepted=wakeup.accepted), base_url="http://127.0.0.1"
        ) as client:
            yield client, wakeup
    finally:
        stop.set()
        wakeup.wake()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop when asked"


def test_an_accepted_event_wakes_the_sleeping_worker(
    serving: tuple[TestClient, ObservedWakeup], services: Services
) -> None:
    """With --poll 3600, an accepted event still starts its run at once: the webhook wakes it."""
    client, wakeup = serving
    assert wakeup.sleeping.wait(timeout=30), "the worker never went idle"
    response = client.post("/hooks/registry", content=_body(1), headers=HEADERS)
    assert response.status_code == 202
    _until(lambda: _first_steps_started(services) == 1, "the triggered run's first step")
    _until(lambda: _succeeded(services) == 1, "the run to succeed")


def test_a_long_step_does_not_hold_back_events_and_other_runs(
    serving: tuple[TestClient, ObservedWakeup], services: Services
) -> None:
    """While one run's step takes a minute, an accepted event still starts and finishes its run.

    The long run holds one of the worker's two slots; the event's run takes the
    other. Then cancelling the long run stops its command. (Before runs were
    tasks kept between rounds, the worker waited for the long step to end
    before it looked at the inbox again.)
    """
    client, wakeup = serving
    slow = runs.start_run(services, runs.RunRequest(pipeline="slow", user="ann"))
    wakeup.wake()  # the worker polls hourly here; a run started by hand is announced
    _until(
        lambda: queries.show_run(services, slow)["steps"][0]["status"] == "running",
        "the long step to start",
    )
    response = client.post("/hooks/registry", content=_body(1), headers=HEADERS)
    assert response.status_code == 202
    _until(lambda: _succeeded(services) == 1, "the event's run to succeed", timeout=20)
    assert queries.show_run(services, slow)["status"] == "running"
    runs.cancel(services, slow, user="ann")
    _until(lambda: queries.show_run(services, slow)["status"] == "cancelled", "the cancel")


def _background_with_run(
    services: Services, pipeline: str
) -> tuple[threading.Thread, threading.Event, Wakeup, int]:
    """The background thread of `conveyor serve` (polling hourly), woken for a run of ``pipeline``.

    Returns the thread, its stop flag, its wake-up and the run's id.
    """
    wakeup = Wakeup()
    stop = threading.Event()
    worker = Worker(services=services, name="bg", concurrency=2)
    thread = threading.Thread(
        target=background, args=(services, worker, stop, 3600.0, wakeup), daemon=True
    )
    thread.start()
    run_id = runs.start_run(services, runs.RunRequest(pipeline=pipeline, user="ann"))
    wakeup.wake()
    return thread, stop, wakeup, run_id


def test_a_stop_during_a_long_step_kills_its_command_and_gives_the_run_back(
    services: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Stopping with a step still running: its command dies, the run is not marked cancelled.

    The run is given back, so another worker takes it over at once and applies
    the interrupted-step rules. (Marking it cancelled would read as a user's cancel.)
    """
    monkeypatch.setattr(engine_background, "STOP_WAIT", 0.5)
    thread, stop, wakeup, slow = _background_with_run(services, "slow")
    # The command writes its shell's pid into its working directory, under the data dir.
    pid_files: list[Path] = []

    def written() -> bool:
        pid_files[:] = [p for p in services.data_dir.rglob("pid") if p.read_text().strip()]
        return bool(pid_files)

    _until(written, "the command's pid")
    pid = int(pid_files[0].read_text())
    stop.set()
    wakeup.wake()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop when asked"

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # killed, not yet reaped

    _until(gone, "the command to be killed", timeout=10)
    view = queries.show_run(services, slow)
    assert (view["status"], view["steps"][0]["status"]) == ("running", "running")
    # Given back: the next worker takes it over at once; a command step found
    # running was interrupted, so it fails as such (it is not run twice).
    asyncio.run(Worker(services=services, name="next").run_until_idle())
    view = queries.show_run(services, slow)
    assert view["status"] == "failed"
    assert "interrupted" in view["steps"][0]["reason"]


def test_a_stop_waits_for_a_run_in_flight_to_end_and_no_longer(
    services: Services,
) -> None:
    """A step that ends within the stop's grace (25 s) ends, and the stop follows at once.

    (The stop used to go on polling the finished run until the grace ran out.)
    """
    thread, stop, wakeup, short = _background_with_run(services, "short")
    _until(
        lambda: any(p.read_text().strip() for p in services.data_dir.rglob("pid")),
        "the step's command to start",
    )
    stop.set()
    wakeup.wake()
    thread.join(timeout=15)  # the step takes 2 s; the grace would be 25 s
    assert not thread.is_alive(), "the stop waited past the end of the run in flight"
    assert queries.show_run(services, short)["status"] == "succeeded"


def test_the_worker_keeps_one_registry_connection_across_events(
    serving: tuple[TestClient, ObservedWakeup],
    services: Services,
    fake_registry: tuple[FakeRegistry, str],
) -> None:
    """Every event without a digest is resolved in the registry, over one kept-alive connection."""
    client, wakeup = serving
    registry, _ = fake_registry
    hub_headers = {**HEADERS, "Content-Type": "application/json"}
    for n in range(1, 4):
        assert wakeup.sleeping.wait(timeout=30), "the worker never went idle"
        response = client.post("/hooks/hub", content=_hub_body(n), headers=hub_headers)
        assert response.status_code == 202
        _until(lambda n=n: _succeeded(services) == n, f"run {n} to succeed")
    # Each event's tag resolved once (its run takes that digest), one after the other.
    assert registry.manifest_requests == 3
    assert registry.connections == 1


class RecordingStop(threading.Event):
    """A stop event that records the pauses asked of it (and does not sleep them)."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout or 0.0)
        return self.is_set()


def _ingest(services: Services, count: int) -> None:
    headers = Headers(list(HEADERS.items()))
    for n in range(1, count + 1):
        events.ingest(services, "registry", headers=headers, body=_body(n))


def test_under_an_ingestion_burst_the_worker_gives_way_yet_finishes(services: Services) -> None:
    """While events pour in it pauses after each batch, but every event and run still gets done."""
    _ingest(services, 20)
    wakeup = Wakeup(clock=lambda: 0.0)  # time stands still: the burst stays in the window
    wakeup.accepted(10_000)  # far above PRESSURE_RATE
    stop = RecordingStop()
    done = engine_background.drain(services, Worker(services=services, name="bg"), stop, wakeup)
    assert done == 40  # 20 events and their 20 runs: never starved
    assert _succeeded(services) == 20
    batches = -(-20 // engine_background.EVENT_BATCH)
    assert len(stop.pauses) >= batches  # gave way after every batch of work
    assert all(0 < p <= engine_background.MAX_PAUSE for p in stop.pauses)


def test_at_an_ordinary_rate_the_worker_never_pauses(services: Services) -> None:
    """Below the pressure rate the worker works straight through."""
    _ingest(services, 5)
    wakeup = Wakeup()
    wakeup.accepted(5)
    stop = RecordingStop()
    done = engine_background.drain(services, Worker(services=services, name="bg"), stop, wakeup)
    assert done == 10
    assert stop.pauses == []


def test_the_pressure_rate_counts_only_recent_acceptances() -> None:
    """The rate is events accepted within the window; older ones are forgotten."""
    now = [100.0]
    wakeup = Wakeup(clock=lambda: now[0])
    wakeup.accepted(150)
    now[0] += engine_background.PRESSURE_WINDOW / 2
    wakeup.accepted(100)
    assert wakeup.rate() == 250 / engine_background.PRESSURE_WINDOW
    assert wakeup.under_pressure()
    now[0] += engine_background.PRESSURE_WINDOW * 0.75
    assert wakeup.rate() == 100 / engine_background.PRESSURE_WINDOW
    assert not wakeup.under_pressure()
