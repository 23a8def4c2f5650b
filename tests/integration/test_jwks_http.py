"""Signing keys fetched over real HTTP (jwks_url): caching, rotation, failures, timeouts.

The certs endpoint is a loopback stand-in for Google's
(https://www.googleapis.com/oauth2/v3/certs), publishing RSA keys the test
generates in place of Google's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import jwks
from tests.support import oidc
from tests.support.waiting import wait_until

WAIT = 15.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[oidc.JwksServer]:
    with oidc.JwksServer(oidc.signing_key("k1"), cache_control="public, max-age=600") as served:
        yield served


def _refreshed(keys: jwks.JwksKeys) -> None:
    future = keys.request_refresh()
    assert future is not None
    future.result(WAIT)


def test_rotation_is_picked_up_once_per_new_kid(server: oidc.JwksServer) -> None:
    """A new kid makes one refetch; made-up kids after it make none within the interval."""
    clock = FakeClock()
    keys = jwks.JwksKeys(jwks.url_fetcher(server.url), source=server.url, clock=clock)
    _refreshed(keys)
    assert keys.get("k1") is not None and server.hits == 1
    server.publish(oidc.signing_key("k1"), oidc.signing_key("k2"))  # Google adds the next key
    clock.now += jwks.MIN_REFETCH_INTERVAL
    assert keys.get("k2") is None  # not yet: the endpoint asks for a refetch on this miss
    _refreshed(keys)
    assert keys.get("k2") is not None and server.hits == 2
    for _ in range(20):
        assert keys.get("forged") is None and keys.request_refresh() is None
    assert server.hits == 2


def test_cache_control_max_age_is_honoured(server: oidc.JwksServer) -> None:
    clock = FakeClock()
    keys = jwks.JwksKeys(jwks.url_fetcher(server.url), source=server.url, clock=clock)
    _refreshed(keys)
    server.publish(oidc.signing_key("k2"))
    clock.now += 599
    assert keys.get("k1") is not None
    assert server.hits == 1
    clock.now += 1
    assert keys.get("k1") is not None  # still answered while the refresh runs
    wait_until(lambda: keys.get("k2") is not None, "the background refresh", timeout=WAIT)
    assert server.hits == 2 and keys.get("k1") is None


def test_a_failing_endpoint_keeps_the_keys_and_is_named(server: oidc.JwksServer) -> None:
    clock = FakeClock()
    keys = jwks.JwksKeys(jwks.url_fetcher(server.url), source=server.url, clock=clock)
    _refreshed(keys)
    server.status = 503
    clock.now += jwks.MIN_REFETCH_INTERVAL
    _refreshed(keys)
    assert keys.get("k1") is not None
    assert keys.describe() == f"{server.url} (last fetch failed: {server.url}: HTTP 503)"


def test_a_hanging_endpoint_times_out(server: oidc.JwksServer) -> None:
    server.gate.clear()
    keys = jwks.JwksKeys(jwks.url_fetcher(server.url, timeout=0.2), source=server.url)
    _refreshed(keys)
    assert "last fetch failed: " in keys.describe() and "ReadTimeout" in keys.describe()


def test_not_a_key_set(server: oidc.JwksServer) -> None:
    server.document = b"<html>sign in</html>"
    keys = jwks.JwksKeys(jwks.url_fetcher(server.url), source=server.url)
    _refreshed(keys)
    assert keys.describe().endswith(f"(last fetch failed: {server.url}: not a JSON document)")
