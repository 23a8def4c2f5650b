"""Runs started by registry events: the event's digest, its recorded origin, one transaction.

Real SQLite, the in-memory registry fake (it records every call it gets).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from conveyor.core.events import Headers
from conveyor.core.images import Digest
from conveyor.service import audit, events, runs
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import HOST

SECRET = "event-runs-secret"
CONFIG = textwrap.dedent(
    f"""\
    registries:
      main: {{url: "https://{HOST}"}}
    environments:
      - name: pre-release
    sources:
      myapp:
        registry: main
        repository: team/myapp
        filter: {{glob: "myapp-V*"}}
    webhooks:
      registry: {{format: distribution, registry: main, secret_env: HOOK_SECRET}}
      hub: {{format: dockerhub, registry: main, secret_env: HOOK_SECRET}}
    pipelines:
      prerelease-cd:
        environment: pre-release
        source: {{artifact: myapp}}
        triggers:
          - registry_event: {{source: myapp, events: [push], tag: "^(myapp|rc)-"}}
        steps:
          - {{name: cheap, type: command, run: "true"}}
    """
)
DISTRIBUTION = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}


def _services(make_services: Callable[[str], Services]) -> Services:
    return dataclasses.replace(make_services(CONFIG), environ={"HOOK_SECRET": SECRET})


def _push(delivery: str, tag: str, digest: Digest) -> bytes:
    target = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": str(digest),
        "size": 2,
        "repository": "team/myapp",
        "url": f"https://{HOST}/v2/team/myapp/manifests/{digest}",
        "tag": tag,
    }
    event = {
        "id": delivery,
        "timestamp": "2026-11-29T10:00:00Z",
        "action": "push",
        "target": target,
        "request": {"id": "r", "addr": "1", "host": HOST, "method": "PUT", "useragent": "t"},
        "actor": {},
        "source": {"addr": HOST, "instanceID": "i"},
    }
    return json.dumps({"events": [event]}).encode()


def _deliver(services: Services, endpoint: str, body: bytes, headers: dict[str, str]) -> int:
    ingested = events.ingest(
        services,
        endpoint,
        headers=Headers({"Authorization": f"Bearer {SECRET}", **headers}),
        body=body,
    )
    (event_id,) = ingested.accepted
    return event_id


def _run(services: Services, run_id: int) -> tables.Run:
    with unit_of_work(services.engine, read_only=True) as session:
        return runs.load_run(session, run_id)


def _started(services: Services, run_id: int) -> dict[str, Any]:
    entry = next(e for e in audit.list_entries(services) if e["target"] == f"run/{run_id}")
    assert entry["action"] == "run.start"
    details: dict[str, Any] = entry["details"]
    return details


def test_the_run_takes_the_pushed_digest_even_when_the_tag_has_moved_since(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Push D1, then D2 to the same tag before the first event is processed: two runs, D1 and D2.

    Resolving the tag at run start would give both runs D2, and D1 would never run.
    """
    services = _services(make_services)
    first = registry.push("team/myapp", "myapp-V1.0.0", b"first")
    first_event = _deliver(
        services, "registry", _push("d1", "myapp-V1.0.0", first.digest), DISTRIBUTION
    )
    second = registry.push("team/myapp", "myapp-V1.0.0", b"second")
    second_event = _deliver(
        services, "registry", _push("d2", "myapp-V1.0.0", second.digest), DISTRIBUTION
    )
    registry.calls.clear()

    assert events.process_pending(services, owner="test") == 2

    outcomes = [events.show_event(services, e)["outcome"] for e in (first_event, second_event)]
    run_ids = [o["triggers"][0]["run"] for o in outcomes]
    assert [_run(services, r).image_digest for r in run_ids] == [
        str(first.digest),
        str(second.digest),
    ]
    assert all(_run(services, r).image_tag == "myapp-V1.0.0" for r in run_ids)
    assert registry.calls == []  # the tag was not looked up again
    assert [o["triggers"][0]["digest_from"] for o in outcomes] == ["event", "event"]
    assert _started(services, run_ids[0]) == {
        "pipeline": "prerelease-cd",
        "digest": str(first.digest),
        "digest_from": "event",
    }


def test_a_run_started_by_a_user_with_a_tag_still_resolves_it(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Only an event's digest is taken as is; `conveyor run --tag` asks the registry."""
    services = _services(make_services)
    pushed = registry.push("team/myapp", "myapp-V1.0.0", b"one")
    run_id = runs.start_run(
        services, runs.RunRequest(pipeline="prerelease-cd", tag="myapp-V1.0.0", user="ann")
    )
    assert registry.calls == ["resolve"]
    assert _run(services, run_id).image_digest == str(pushed.digest)
    assert _started(services, run_id)["digest_from"] == "registry"


def test_the_source_filter_still_refuses_an_event_tag(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """The trigger matches `rc-1` but the source admits only `myapp-V*`: refused, no run."""
    services = _services(make_services)
    pushed = registry.push("team/myapp", "rc-1", b"rc")
    event_id = _deliver(services, "registry", _push("d1", "rc-1", pushed.digest), DISTRIBUTION)

    events.process_pending(services, owner="test")

    (trigger,) = events.show_event(services, event_id)["outcome"]["triggers"]
    assert trigger["matched"] is True and trigger["run"] is None
    assert "myapp-V*" in trigger["refused"]
    with unit_of_work(services.engine, read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(tables.Run)) == 0


def test_an_event_without_digest_is_resolved_once_and_the_run_takes_that_digest(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Docker Hub sends no digest: resolved while processing, not a second time at run start."""
    services = _services(make_services)
    pushed = registry.push("team/myapp", "myapp-V2.0.0", b"two")
    body = json.dumps(
        {
            "push_data": {"pushed_at": 1764410400, "pusher": "ci", "tag": "myapp-V2.0.0"},
            "repository": {"repo_name": "team/myapp", "namespace": "team", "name": "myapp"},
        }
    ).encode()
    event_id = _deliver(services, "hub", body, {"Content-Type": "application/json"})
    registry.calls.clear()

    events.process_pending(services, owner="test")

    (trigger,) = events.show_event(services, event_id)["outcome"]["triggers"]
    assert registry.calls == ["resolve"]
    assert _run(services, trigger["run"]).image_digest == str(pushed.digest)
    assert trigger["digest_from"] == "registry, when the event was processed"


def test_an_event_that_already_started_its_run_starts_no_second_one(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Processed again (its claim expired, say): the run exists, the event is still processed."""
    services = _services(make_services)
    pushed = registry.push("team/myapp", "myapp-V1.0.0", b"one")
    event_id = _deliver(
        services, "registry", _push("d1", "myapp-V1.0.0", pushed.digest), DISTRIBUTION
    )
    events.process_pending(services, owner="test")
    with unit_of_work(services.engine) as session:
        session.execute(
            sa.update(tables.Event).where(tables.Event.id == event_id).values(status="pending")
        )

    assert events.process_pending(services, owner="other") == 1

    shown = events.show_event(services, event_id)
    (trigger,) = shown["outcome"]["triggers"]
    assert shown["status"] == "processed"
    assert trigger["run"] is None and "already exists" in trigger["note"]
    with unit_of_work(services.engine, read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(tables.Run)) == 1


def test_a_pipeline_of_another_repository_resolves_the_tag_in_its_own(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """The event's digest belongs to the event's repository: a pipeline taking its image
    from another source (triggered by this one's pushes) looks the tag up there."""
    config = CONFIG.replace(
        '    filter: {glob: "myapp-V*"}\n',
        '    filter: {glob: "myapp-V*"}\n  mirror: {registry: main, repository: team/mirror}\n',
    ).replace("source: {artifact: myapp}", "source: {artifact: mirror}")
    assert "team/mirror" in config and "{artifact: mirror}" in config
    services = dataclasses.replace(make_services(config), environ={"HOOK_SECRET": SECRET})
    pushed = registry.push("team/myapp", "myapp-V1.0.0", b"app")
    mirrored = registry.push("team/mirror", "myapp-V1.0.0", b"mirror")
    event_id = _deliver(
        services, "registry", _push("d1", "myapp-V1.0.0", pushed.digest), DISTRIBUTION
    )

    events.process_pending(services, owner="test")

    (trigger,) = events.show_event(services, event_id)["outcome"]["triggers"]
    run = _run(services, trigger["run"])
    assert (run.image_repository, run.image_digest) == (
        f"{HOST}/team/mirror",
        str(mirrored.digest),
    )
    assert trigger["digest_from"] == "registry"
