"""The HTTP surface in-process: webhooks into the inbox, triggers, and the token-guarded API."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from conveyor import wiring
from conveyor.api.app import build_app
from conveyor.config import loader
from conveyor.core.images import Digest
from conveyor.engine.worker import Worker
from conveyor.service import environments, events, tokens
from conveyor.service.context import Services
from conveyor.store import database, tables
from conveyor.store.database import unit_of_work
from conveyor.testing import InMemoryRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRET = "s3cret-webhook-value"
HOST = "127.0.0.1:5000"
CONFIG = textwrap.dedent(
    f"""\
    registries:
      local: {{url: "http://{HOST}", tls: {{insecure: true}}}}
    environments:
      - name: pre-release
    sources:
      myapp:
        registry: local
        repository: myteam/myapp
        filter: {{pattern: '^myapp-V(?P<version>.+)$', extract: '$version'}}
    webhooks:
      registry:
        format: distribution
        registry: local
        secret_env: HOOK_SECRET
    pipelines:
      prerelease-cd:
        environment: pre-release
        source: {{artifact: myapp}}
        triggers:
          - registry_event: {{source: myapp, webhook: registry, events: [push], tag: "^myapp-V.*"}}
        steps:
          - {{type: deploy, deployer: registry-tag, with: {{tag: pre-release}}}}
    """
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry(host=HOST)


def _services(
    directory: Path, registry: InMemoryRegistry, config: str, environ: dict[str, str]
) -> Services:
    (directory / "conveyor.yaml").write_text(config)
    definitions = loader.load(directory / "conveyor.yaml")
    return Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{directory / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(definitions.registries, {}, lambda d, c: registry),
        data_dir=directory / "data",
        clock=Clock(),
        environ=environ,
    )


@pytest.fixture
def services(tmp_path: Path, registry: InMemoryRegistry) -> Iterator[Services]:
    built = _services(tmp_path, registry, CONFIG, {"HOOK_SECRET": SECRET})
    yield built
    built.engine.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services), base_url="http://127.0.0.1") as test_client:
        yield test_client


def _payload(name: str = "distribution-push.json") -> bytes:
    return (FIXTURES / name).read_bytes()


def _post(client: TestClient, body: bytes, *, secret: str | None = SECRET) -> Any:
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return client.post("/hooks/registry", content=body, headers=headers)


def _counts(services: Services) -> tuple[int, int]:
    with unit_of_work(services.engine, read_only=True) as session:
        event_count = session.scalar(sa.select(sa.func.count()).select_from(tables.Event))
        run_count = session.scalar(sa.select(sa.func.count()).select_from(tables.Run))
    return int(event_count or 0), int(run_count or 0)


class TestWebhooks:
    def test_push_event_triggers_the_pipeline(
        self, client: TestClient, services: Services, registry: InMemoryRegistry
    ) -> None:
        """A verified push of myapp-V* is stored, then starts the pre-release pipeline."""
        registry.push("myteam/myapp", "myapp-V1.4.2", b"manifest")
        # The run deploys the digest the event reports (the fixture's), not the tag's now.
        pushed_digest = Digest.parse(json.loads(_payload())["events"][0]["target"]["digest"])
        registry.manifests["myteam/myapp"].add(pushed_digest)
        response = _post(client, _payload())
        assert response.status_code == 202
        assert response.json()["accepted"] == 1
        assert _counts(services) == (1, 0)  # stored before anything runs

        events.process_pending(services, owner="test")
        event = events.list_events(services, limit=1)[0]
        trigger = event["outcome"]["triggers"][0]
        assert trigger["matched"] is True and trigger["run"] == 1
        import asyncio

        asyncio.run(Worker(services=services, name="w").run_until_idle())
        assert registry.tags[("myteam/myapp", "pre-release")] == pushed_digest

    def test_same_delivery_five_times_starts_one_run(
        self, client: TestClient, services: Services, registry: InMemoryRegistry
    ) -> None:
        """Registries retry: five posts of one delivery start exactly one run."""
        registry.push("myteam/myapp", "myapp-V1.4.2", b"manifest")
        for _ in range(5):
            assert _post(client, _payload()).status_code == 202
        events.process_pending(services, owner="test")
        assert _counts(services) == (1, 1)

    def test_tag_outside_the_trigger_regex_does_not_trigger(
        self, client: TestClient, services: Services, registry: InMemoryRegistry
    ) -> None:
        """A push of another tag is recorded with the reason it did not trigger."""
        body = json.loads(_payload())
        body["events"][0]["target"]["tag"] = "other-1.0"
        body["events"][0]["id"] = "another-delivery"
        assert _post(client, json.dumps(body).encode()).status_code == 202
        events.process_pending(services, owner="test")
        trigger = events.list_events(services, limit=1)[0]["outcome"]["triggers"][0]
        assert trigger["matched"] is False
        assert trigger["reason"] == "tag 'other-1.0' does not match '^myapp-V.*'"
        assert _counts(services) == (1, 0)

    @pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x"])
    def test_bad_authentication_is_refused_without_a_trace(
        self, client: TestClient, services: Services, secret: str | None
    ) -> None:
        """Missing or wrong credentials get 401 and store nothing."""
        response = _post(client, _payload(), secret=secret)
        assert response.status_code == 401
        assert SECRET not in response.text
        assert _counts(services) == (0, 0)

    def test_during_a_rotation_the_previous_secret_is_also_accepted(
        self, tmp_path: Path, registry: InMemoryRegistry
    ) -> None:
        """previous_secret_env: the old secret still gets in (logged); anything else does not."""
        rotating = CONFIG.replace(
            "secret_env: HOOK_SECRET", "secret_env: HOOK_SECRET\n    previous_secret_env: OLD"
        )
        environ = {"HOOK_SECRET": SECRET, "OLD": "the-old-secret"}
        (tmp_path / "rotating").mkdir()
        rotated = _services(tmp_path / "rotating", registry, rotating, environ)
        body = json.loads(_payload())
        with TestClient(build_app(rotated), base_url="http://127.0.0.1") as test_client:
            answers = []
            for n, secret in enumerate([SECRET, "the-old-secret", "wrong", None]):
                body["events"][0]["id"] = f"delivery-{n}"
                answers.append(_post(test_client, json.dumps(body).encode(), secret=secret))
            # With the old variable gone (rotation finished), the old secret is refused.
            environ.pop("OLD")
            body["events"][0]["id"] = "after-the-rotation"
            late = _post(test_client, json.dumps(body).encode(), secret="the-old-secret")
        assert [a.status_code for a in answers] == [202, 202, 401, 401]
        # A refusal names what the current secret found wrong, and never a secret.
        assert answers[2].json()["detail"] == "Authorization bearer token does not match"
        assert "the-old-secret" not in answers[2].text + late.text
        assert late.status_code == 401
        assert _counts(rotated) == (2, 0)
        rotated.engine.dispose()

    def test_unknown_endpoint_and_bad_json(self, client: TestClient, services: Services) -> None:
        """Unknown endpoints are 404; invalid JSON is 400 naming the problem; nothing stored."""
        missing = client.post("/hooks/nope", content=b"{}", headers={"Authorization": "Bearer x"})
        assert missing.status_code == 404
        broken = _post(client, b"{not json")
        assert broken.status_code == 400
        assert "JSON" in broken.json()["detail"]
        assert _counts(services) == (0, 0)

    def test_hooks_take_only_post_on_one_segment(self, client: TestClient) -> None:
        """Other methods are 405 and deeper paths 404, as routed by Starlette."""
        assert client.get("/hooks/registry").status_code == 405
        assert client.post("/hooks/registry/more", content=b"{}").status_code == 404
        assert client.post("/hooks/", content=b"{}").status_code == 404

    def test_body_over_the_limit_is_413(self, client: TestClient, services: Services) -> None:
        """A body over 1 MiB is refused before it is read whole."""
        response = _post(client, b"{" + b" " * (1024 * 1024 + 10) + b"}")
        assert response.status_code == 413
        assert _counts(services) == (0, 0)

    def test_a_delivery_that_cannot_be_stored_is_503_and_leaves_nothing(
        self, client: TestClient, services: Services
    ) -> None:
        """The inbox write failing: 503 with Retry-After, so the sender retries; no row, no 202."""
        with services.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE events RENAME TO events_elsewhere")
        response = _post(client, _payload())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["title"] == "not-stored"
        with services.engine.connect() as connection:
            stored = connection.exec_driver_sql("SELECT count(*) FROM events_elsewhere").scalar()
        assert stored == 0

    def test_on_accepted_hears_of_new_events_after_their_commit(
        self, services: Services, registry: InMemoryRegistry
    ) -> None:
        """on_accepted(n) follows the commit of n new events; redeliveries do not call it."""
        heard: list[tuple[int, tuple[int, int]]] = []
        app = build_app(services, on_accepted=lambda n: heard.append((n, _counts(services))))
        with TestClient(app, base_url="http://127.0.0.1") as test_client:
            assert _post(test_client, _payload()).status_code == 202
            assert _post(test_client, _payload()).status_code == 202  # a redelivery
        assert heard == [(1, (1, 0))]  # called once, when the event was already stored

    def test_a_failing_on_accepted_does_not_fail_the_delivery(self, services: Services) -> None:
        """The callback is a hint: if it raises, the stored delivery still gets its 202."""

        def broken(count: int) -> None:
            raise RuntimeError("worker gone")

        with TestClient(build_app(services, on_accepted=broken)) as test_client:
            response = _post(test_client, _payload())
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert _counts(services) == (1, 0)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.binary(max_size=2000), authorized=st.booleans())
    def test_fuzzed_deliveries_never_5xx(
        self, client: TestClient, services: Services, body: bytes, authorized: bool
    ) -> None:
        """Random bodies get a 4xx or a 202, never a 5xx, and refused ones store nothing."""
        before = _counts(services)
        response = _post(client, body, secret=SECRET if authorized else "nope")
        assert response.status_code < 500
        if response.status_code >= 400:
            assert _counts(services) == before


class TestApi:
    def _token(self, services: Services, role: str, name: str | None = None) -> dict[str, str]:
        token = tokens.create(services, name=name or role, role=role, created_by="admin")
        return {"Authorization": f"Bearer {token}"}

    def test_roles_are_enforced(self, client: TestClient, services: Services) -> None:
        """A viewer may read but not start runs; no token is 401."""
        viewer = self._token(services, "viewer")
        assert client.get("/api/v1/runs", headers=viewer).status_code == 200
        refused = client.post("/api/v1/runs", json={"pipeline": "prerelease-cd"}, headers=viewer)
        assert refused.status_code == 403
        assert "needs operator" in refused.json()["detail"]
        assert client.get("/api/v1/runs").status_code == 401

    def test_start_a_run_and_errors_name_the_field(
        self, client: TestClient, services: Services, registry: InMemoryRegistry
    ) -> None:
        """An operator starts a run by tag; a wrongly typed field is named in the error."""
        pushed = registry.push("myteam/myapp", "myapp-V1.4.2", b"manifest")
        operator = self._token(services, "operator")
        started = client.post(
            "/api/v1/runs",
            json={"pipeline": "prerelease-cd", "tag": "myapp-V1.4.2"},
            headers=operator,
        )
        assert started.status_code == 201
        assert started.json()["digest"] == str(pushed.digest)
        wrong = client.post("/api/v1/runs", json={"pipeline": 5}, headers=operator)
        assert wrong.status_code == 400
        assert wrong.json()["errors"][0]["field"] == "pipeline"

    def test_the_audit_log_is_for_admins_only(self, client: TestClient, services: Services) -> None:
        """GET /api/v1/audit: admins read every write with its identity; other roles get 403."""
        for role in ("viewer", "operator", "approver"):
            refused = client.get("/api/v1/audit", headers=self._token(services, role))
            assert refused.status_code == 403, role
            assert "needs admin" in refused.json()["detail"]
        assert client.get("/api/v1/audit").status_code == 401
        admin = self._token(services, "admin")
        marked = client.post(
            "/api/v1/bad-digests",
            json={"digest": "sha256:" + "cd" * 32, "reason": "leaked key"},
            headers=self._token(services, "operator", name="ops-bot"),
        )
        assert marked.status_code == 201, marked.text
        entries = client.get("/api/v1/audit", headers=admin).json()
        assert (entries[0]["identity"], entries[0]["action"]) == ("ops-bot", "digest.mark_bad")
        assert {e["action"] for e in entries[1:]} == {"token.create"}
        assert len(client.get("/api/v1/audit?limit=2", headers=admin).json()) == 2
        wrong = client.get("/api/v1/audit?limit=many", headers=admin)
        assert wrong.status_code == 400
        assert wrong.json()["errors"][0]["field"] == "limit"

    def test_the_inbox_is_listed_by_status_and_endpoint(
        self, client: TestClient, services: Services
    ) -> None:
        """GET /api/v1/events?status=&endpoint=&limit=: filters apply; bad values name the field."""
        body = json.loads(_payload())
        for n in range(3):
            body["events"][0]["id"] = f"delivery-{n}"
            body["events"][0]["target"]["tag"] = f"other-{n}"  # triggers nothing
            assert _post(client, json.dumps(body).encode()).status_code == 202
        events.process_pending(services, owner="test", limit=1)  # the oldest only
        viewer = self._token(services, "viewer")

        def listed(query: str) -> list[tuple[str, str]]:
            answer = client.get(f"/api/v1/events{query}", headers=viewer)
            assert answer.status_code == 200, answer.text
            return [(e["delivery_id"], e["status"]) for e in answer.json()]

        assert listed("") == [
            ("delivery-2", "pending"),
            ("delivery-1", "pending"),
            ("delivery-0", "processed"),
        ]
        assert listed("?status=pending&limit=1") == [("delivery-2", "pending")]
        assert listed("?status=processed&endpoint=registry") == [("delivery-0", "processed")]
        assert listed("?endpoint=elsewhere") == []
        for query, field in (("?status=stuck", "status"), ("?limit=0", "limit")):
            wrong = client.get(f"/api/v1/events{query}", headers=viewer)
            assert wrong.status_code == 400, query
            assert wrong.json()["errors"][0]["field"] == field

    def test_listing_and_log_queries_are_checked_naming_the_field(
        self, client: TestClient, services: Services
    ) -> None:
        """A wrong query value is a 400 naming it, not an empty or silently changed answer."""
        viewer = self._token(services, "viewer")
        for path, field in (
            ("/api/v1/runs?status=exploded", "status"),
            ("/api/v1/runs?limit=0", "limit"),
            ("/api/v1/runs?limit=5000", "limit"),
            ("/api/v1/runs/1/logs?after=-3", "after"),
        ):
            wrong = client.get(path, headers=viewer)
            assert wrong.status_code == 400, path
            assert wrong.json()["errors"][0]["field"] == field, path
        assert client.get("/api/v1/runs?status=queued", headers=viewer).json() == []

    def test_tokens_are_stored_hashed(self, services: Services) -> None:
        """Only the token's hash is stored."""
        token = tokens.create(services, name="ci", role="viewer", created_by="admin")
        with unit_of_work(services.engine, read_only=True) as session:
            stored = session.scalars(sa.select(tables.ApiToken.token_hash)).all()
        assert token not in stored and len(stored[0]) == 64


VENDORS = [
    # (format, fixture, auth, extra headers, content type, events expected)
    ("distribution", "distribution-push", "bearer", {}, "application/json", 1),
    ("harbor", "harbor-push-artifact", "bearer", {}, "application/json", 1),
    ("harbor", "harbor-scanning-completed", "bearer", {}, "application/json", 1),
    (
        "harbor-cloudevents",
        "harbor-push-artifact-cloudevents",
        "bearer",
        {},
        "application/cloudevents+json",
        1,
    ),
    ("acr", "acr-push", "basic", {}, "application/json", 1),
    ("azure", "azure-acr-push", "bearer", {}, "application/json", 1),
    ("dockerhub", "dockerhub-push", "basic", {}, "application/json", 1),
    (
        "github",
        "github-package-published",
        "hmac-sha256",
        {"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "d-1"},
        "application/json",
        1,
    ),
    ("quay", "quay-push", "basic", {}, "application/json", 1),
    ("ecr", "ecr-image-action", "header", {}, "application/json", 1),
    ("ecr", "ecr-image-scan", "header", {}, "application/json", 1),
    ("gar", "gar-pubsub-insert", "bearer", {}, "application/json", 1),
]


def _vendor_services(tmp_path: Path, fmt: str, auth: str) -> Services:
    header = "\n    header: X-Api-Key" if auth == "header" else ""
    config = (
        f"registries:\n  local: {{url: 'http://{HOST}', tls: {{insecure: true}}}}\n"
        f"webhooks:\n  vendor:\n    format: {fmt}\n    auth: {auth}{header}\n"
        "    secret_env: HOOK_SECRET\n"
    )
    return _services(tmp_path, InMemoryRegistry(host=HOST), config, {"HOOK_SECRET": SECRET})


def _credentials(auth: str, body: bytes, secret: str) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    if auth == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if auth == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"hook:{secret}".encode()).decode()}
    if auth == "header":
        return {"X-Api-Key": secret}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


@pytest.mark.parametrize(
    ("fmt", "fixture", "auth", "headers", "content_type", "expected"),
    [pytest.param(*v, id=v[1]) for v in VENDORS],
)
def test_every_vendor_through_the_endpoint(
    tmp_path: Path,
    fmt: str,
    fixture: str,
    auth: str,
    headers: dict[str, str],
    content_type: str,
    expected: int,
) -> None:
    """Each sender's payload is stored with valid credentials and refused (401, no row) without."""
    services = _vendor_services(tmp_path, fmt, auth)
    body = (Path(__file__).parents[1] / "fixtures" / "webhooks" / f"{fixture}.json").read_bytes()
    with TestClient(build_app(services), base_url="http://127.0.0.1") as test_client:
        for secret in ("wrong-secret", None):
            refused_headers = {"Content-Type": content_type, **headers}
            if secret is not None:
                refused_headers |= _credentials(auth, body, secret)
            refused = test_client.post("/hooks/vendor", content=body, headers=refused_headers)
            assert refused.status_code == 401, refused.text
            assert _counts(services) == (0, 0)
        good = {"Content-Type": content_type, **headers, **_credentials(auth, body, SECRET)}
        accepted = test_client.post("/hooks/vendor", content=body, headers=good)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == expected
        stored = events.list_events(services, limit=5)
        assert [e["sender"] for e in stored] == [fmt] * expected
        assert all(e["repository"] for e in stored)
    services.engine.dispose()


def test_openapi_describes_every_route(client: TestClient) -> None:
    """The OpenAPI document lists exactly the app's /api/v1 routes, each with its role."""
    from starlette.routing import Route

    document = client.get("/api/v1/openapi.json").json()
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    served = {
        (method, route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        and route.path.startswith("/api/v1/")
        and route.path != "/api/v1/openapi.json"
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert described == served
    assert document["paths"]["/api/v1/runs"]["post"]["x-conveyor-role"] == "operator"


def test_missing_digest_is_resolved_from_the_registry(tmp_path: Path) -> None:
    """A Docker Hub push (no digest) is resolved through the endpoint's registry before matching."""
    registry = InMemoryRegistry(host=HOST)
    pushed = registry.push("myteam/myapp", "myapp-V1.4.2", b"hub image")
    (tmp_path / "conveyor.yaml").write_text(
        f"registries:\n  hub: {{url: 'http://{HOST}', tls: {{insecure: true}}}}\n"
        "sources:\n  myapp: {registry: hub, repository: myteam/myapp}\n"
        "webhooks:\n  hub: {format: dockerhub, registry: hub, auth: basic, secret_env: HOOK_SECRET}\n"
        "pipelines:\n  cd:\n    source: {artifact: myapp}\n    triggers:\n"
        "      - registry_event: {source: myapp, events: [push], tag: '^myapp-V'}\n"
        "    steps: [{type: command, run: 'true'}]\n"
    )
    definitions = loader.load(tmp_path / "conveyor.yaml")
    services = Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(definitions.registries, {}, lambda d, c: registry),
        data_dir=tmp_path / "data",
        clock=Clock(),
        environ={"HOOK_SECRET": SECRET},
    )
    body = (FIXTURES / "dockerhub-push.json").read_bytes()
    with TestClient(build_app(services), base_url="http://127.0.0.1") as test_client:
        response = test_client.post(
            "/hooks/hub",
            content=body,
            headers={"Content-Type": "application/json", **_credentials("basic", body, SECRET)},
        )
    assert response.status_code == 202, response.text
    events.process_pending(services, owner="t")
    [event] = events.list_events(services, limit=5)
    assert event["digest"] is None  # the sender did not say
    assert event["outcome"]["resolved"] == {"tags": ["myapp-V1.4.2"], "digest": str(pushed.digest)}
    assert event["outcome"]["triggers"][0]["matched"] is True
    services.engine.dispose()


def test_replay_starts_what_matches_now_and_is_audited(
    client: TestClient, services: Services, registry: InMemoryRegistry
) -> None:
    """An event refused at first (its digest marked bad) starts its run when replayed later.

    The replay is audited.
    """
    digest = json.loads(_payload())["events"][0]["target"]["digest"]
    environments.mark_bad(services, digest, reason="leaked key", user="sec")
    assert _post(client, _payload()).status_code == 202
    events.process_pending(services, owner="t")
    [event] = events.list_events(services, limit=1)
    assert "leaked key" in event["outcome"]["triggers"][0]["refused"]
    environments.clear_bad(services, digest, user="sec")
    operator = {
        "Authorization": "Bearer "
        + tokens.create(services, name="op", role="operator", created_by="admin")
    }
    replayed = client.post(f"/api/v1/events/{event['id']}/replay", headers=operator)
    assert replayed.status_code == 201, replayed.text
    assert replayed.json()["triggers"][0]["run"] is not None
    with unit_of_work(services.engine, read_only=True) as session:
        actions = session.scalars(sa.select(tables.AuditEntry.action)).all()
    assert "event.replay" in actions and "run.start" in actions


class TestReadiness:
    """/readyz: the database answers and the worker runs; /healthz only says the process answers."""

    def test_ready_when_the_database_answers_and_the_worker_runs(self, services: Services) -> None:
        with TestClient(build_app(services, worker_alive=lambda: True)) as test_client:
            answer = test_client.get("/readyz")
        assert (answer.status_code, answer.json()) == (
            200,
            {"status": "ready", "checks": {"database": "ok", "worker": "running"}},
        )

    def test_not_ready_when_the_worker_thread_has_stopped(self, services: Services) -> None:
        with TestClient(build_app(services, worker_alive=lambda: False)) as test_client:
            answer = test_client.get("/readyz")
            health = test_client.get("/healthz")
        assert (answer.status_code, answer.json()["checks"]["worker"]) == (503, "stopped")
        assert health.status_code == 200  # alive, only not ready

    def test_not_ready_when_the_database_cannot_be_opened(
        self, services: Services, tmp_path: Path
    ) -> None:
        """A database path that is a directory: 503, and the answer names no path."""
        broken = dataclasses.replace(
            services, engine=database.create_engine(f"sqlite:///{tmp_path}")
        )
        with TestClient(build_app(broken)) as test_client:
            answer = test_client.get("/readyz")
        assert (answer.status_code, answer.json()) == (
            503,
            {"status": "not ready", "checks": {"database": "unavailable"}},
        )
        assert str(tmp_path) not in answer.text
        broken.engine.dispose()
