"""POST /hooks/<name> with auth: oidc: a Pub/Sub push of a GAR notification, end to end.

The token is signed with RSA keys the test generates in place of Google's,
published as a JWKS by a loopback stand-in for Google's certs endpoint
(tests/support/oidc.py); the body is the recorded GAR Pub/Sub push fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import jwks, wiring
from conveyor.api.app import build_app
from conveyor.config import loader
from conveyor.service import events
from conveyor.service.context import Services, WebhookKeys
from tests.support import oidc

from .test_hooks_and_api import FIXTURES, HOST, _counts

BODY = (FIXTURES / "gar-pubsub-insert.json").read_bytes()
NOW = datetime(2026, 11, 28, 10, 16, tzinfo=UTC)
WAIT = 15.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def certs() -> Iterator[oidc.JwksServer]:
    with oidc.JwksServer(oidc.signing_key("google-1")) as served:
        yield served


def _services(
    tmp_path: Path, jwks_url: str, keys: dict[str, WebhookKeys] | None = None
) -> Services:
    (tmp_path / "conveyor.yaml").write_text(
        f"registries:\n  gar: {{url: 'http://{HOST}', tls: {{insecure: true}}}}\n"
        "webhooks:\n"
        "  gar:\n"
        "    format: gar\n"
        "    registry: gar\n"
        "    auth: oidc\n"
        f"    audience: {oidc.AUDIENCE}\n"
        f"    email: {oidc.PUSHER}\n"
        f"    jwks_url: {jwks_url}\n"
    )
    definitions = loader.load(tmp_path / "conveyor.yaml")
    return Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(definitions.registries, {}, lambda d, c: None),  # type: ignore[arg-type,return-value]
        data_dir=tmp_path / "data",
        clock=lambda: NOW,
        environ={},  # no secret anywhere: oidc needs none
        webhook_keys=wiring.webhook_keys(definitions) if keys is None else keys,
    )


def _post(client: TestClient, token: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/hooks/gar", content=BODY, headers=headers)


def _token(kid: str = "google-1", **claims: Any) -> str:
    return oidc.signing_key(kid).sign(oidc.claims(NOW, **claims))


def test_a_signed_push_is_stored(tmp_path: Path, certs: oidc.JwksServer) -> None:
    """The keys come from jwks_url (fetched at start-up); the event is stored; 202."""
    services = _services(tmp_path, certs.url)
    with TestClient(build_app(services), base_url="http://127.0.0.1") as client:
        response = _post(client, _token())
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    [event] = events.list_events(services, limit=5)
    assert (event["sender"], event["registry"], event["repository"], event["tag"]) == (
        "gar",
        HOST,
        "my-project/myteam/myapp",
        "myapp-V1.4.2",
    )
    assert certs.hits == 1
    services.engine.dispose()


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        pytest.param(None, "missing Authorization header", id="no-token"),
        pytest.param("not-a-jwt", "is not a JWT", id="malformed"),
        pytest.param(
            oidc.signing_key("attacker").sign(oidc.claims(NOW), kid="google-1"),
            "signature does not verify with key 'google-1'",
            id="wrong-signature",
        ),
        pytest.param(
            oidc.signing_key("google-1").sign(oidc.claims(NOW - timedelta(hours=2))),
            "OIDC token expired at",
            id="expired",
        ),
        pytest.param(
            oidc.signing_key("google-1").sign(oidc.claims(NOW, audience="https://x/hooks/gar")),
            "audience is not",
            id="wrong-audience",
        ),
        pytest.param(
            oidc.signing_key("google-1").sign(oidc.claims(NOW, email="x@y.example")),
            "is not the configured service account",
            id="wrong-email",
        ),
    ],
)
def test_a_bad_token_is_refused_and_stores_nothing(
    tmp_path: Path, certs: oidc.JwksServer, token: str | None, detail: str
) -> None:
    services = _services(tmp_path, certs.url)
    with TestClient(build_app(services), base_url="http://127.0.0.1") as client:
        response = _post(client, token)
    assert response.status_code == 401, response.text
    assert detail in response.json()["detail"]
    assert token is None or token not in response.text
    assert _counts(services) == (0, 0)
    services.engine.dispose()


def test_a_rotated_key_is_fetched_once_and_floods_are_not(
    tmp_path: Path, certs: oidc.JwksServer
) -> None:
    """A token signed with a newly published key is accepted after one refetch; tokens
    naming made-up kids make no fetch within the interval, and are refused with the reason."""
    clock = FakeMonotonic()
    keys = jwks.JwksKeys(jwks.url_fetcher(certs.url), source=certs.url, clock=clock)
    services = _services(tmp_path, certs.url, keys={"gar": keys})
    with TestClient(build_app(services), base_url="http://127.0.0.1") as client:
        assert _post(client, _token()).status_code == 202
        certs.publish(oidc.signing_key("google-1"), oidc.signing_key("google-2"))
        clock.now += jwks.MIN_REFETCH_INTERVAL
        rotated = _post(client, _token("google-2", jti="second"))
        assert rotated.status_code == 202, rotated.text
        assert certs.hits == 2
        for _ in range(10):
            forged = _post(client, oidc.signing_key("attacker").sign(oidc.claims(NOW)))
            assert forged.status_code == 401
        assert certs.hits == 2
        assert forged.json()["detail"] == (
            f"OIDC token is signed with key 'attacker', which is not among the signing keys "
            f"from {certs.url}"
        )
    assert _counts(services)[0] == 1  # the second push is the same message: a duplicate
    services.engine.dispose()


class Watched:
    """The wired key set, telling when the endpoint asks it to refetch (after start-up's ask)."""

    def __init__(self, keys: WebhookKeys) -> None:
        self.keys = keys
        self.asked = 0
        self.asked_by_a_delivery = threading.Event()

    def get(self, kid: str) -> Any:
        return self.keys.get(kid)

    def describe(self) -> str:
        return self.keys.describe()

    def request_refresh(self) -> Any:
        self.asked += 1
        if self.asked > 1:
            self.asked_by_a_delivery.set()
        return self.keys.request_refresh()


def test_the_loop_keeps_serving_while_keys_are_fetched(
    tmp_path: Path, certs: oidc.JwksServer
) -> None:
    """A delivery waiting for the key fetch does not hold up other requests."""
    certs.gate.clear()  # the certs endpoint answers only when released
    services = _services(tmp_path, certs.url)
    watched = Watched(services.webhook_keys["gar"])
    services.webhook_keys = {"gar": watched}
    results: list[int] = []
    with TestClient(build_app(services), base_url="http://127.0.0.1") as client:
        waiting = threading.Thread(
            target=lambda: results.append(_post(client, _token()).status_code)
        )
        waiting.start()
        assert watched.asked_by_a_delivery.wait(WAIT)  # it now awaits the start-up fetch
        assert client.get("/healthz").status_code == 200
        assert results == []  # the delivery is still waiting for the keys
        certs.gate.set()
        waiting.join(WAIT)
    assert results == [202]
    assert certs.hits == 1  # the start-up fetch, shared by the waiting delivery
    services.engine.dispose()


def test_no_keys_on_the_server_refuses(tmp_path: Path) -> None:
    """An oidc endpoint without signing keys wired in refuses (401), storing nothing."""
    services = _services(tmp_path, "https://keys.example.com/certs", keys={})
    with TestClient(build_app(services), base_url="http://127.0.0.1") as client:
        response = _post(client, _token())
    assert response.status_code == 401
    assert (
        response.json()["detail"] == "endpoint 'gar' (auth: oidc) has no signing keys on the server"
    )
    assert _counts(services) == (0, 0)
    services.engine.dispose()


def test_ingest_refetches_for_an_unknown_kid_too(tmp_path: Path, certs: oidc.JwksServer) -> None:
    """Without the server (events.ingest), the first delivery loads the keys and is stored."""
    services = _services(tmp_path, certs.url)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_token()}"}
    from conveyor.core.events import Headers

    result = events.ingest(services, "gar", headers=Headers(headers), body=BODY)
    assert len(result.accepted) == 1 and certs.hits == 1
    services.engine.dispose()
