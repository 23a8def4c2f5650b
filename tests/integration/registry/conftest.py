"""Session-scoped real registries (anonymous, htpasswd Basic, token + TLS) and test images."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.core.credentials import Credentials, Secret
from conveyor.registry.client import DistributionRegistry, RetryPolicy
from conveyor.registry.endpoints import RegistryEndpoint
from tests.support.registry import (
    ImageLayout,
    RegistryProcess,
    TestCA,
    TokenIssuer,
    htpasswd_file,
    random_bytes,
    start_registry,
)

REGISTRY_FIXTURES = {"anonymous_registry", "second_registry", "basic_registry", "token_registry"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start real registries are `slow` (CI runs them; -m "not slow" skips)."""
    for item in items:
        if REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


BASIC_USER, BASIC_PASSWORD = "alice", "basic-Pa55-word"
TOKEN_USER, TOKEN_PASSWORD = "pusher", "token-Pa55-word"


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def anonymous_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path_factory.mktemp("anonymous-registry"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def second_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path_factory.mktemp("second-registry"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    directory = tmp_path_factory.mktemp("basic-registry")
    users = htpasswd_file(directory / "htpasswd", {BASIC_USER: BASIC_PASSWORD})
    registry = start_registry(directory / "registry", htpasswd=users)
    yield registry
    registry.stop()


def _token_policy(user: str | None, repository: str) -> set[str]:
    if user is None:
        return {"pull"} if repository.startswith("public/") else set()
    if repository.startswith("readonly/"):
        return {"pull"}
    return {"pull", "push"}


@pytest.fixture(scope="session")
def token_issuer(ca: TestCA) -> Iterator[TokenIssuer]:
    issuer = TokenIssuer(ca=ca, users={TOKEN_USER: TOKEN_PASSWORD}, policy=_token_policy)
    issuer.start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCA, token_issuer: TokenIssuer
) -> Iterator[RegistryProcess]:
    _, _, cert, key = ca.issue("registry-tls", ip="127.0.0.1")
    registry = start_registry(
        tmp_path_factory.mktemp("token-registry"),
        token_realm=token_issuer.url,
        rootcertbundle=ca.ca_file,
        tls=(cert, key),
    )
    yield registry
    registry.stop()


@dataclass(frozen=True)
class TestImages:
    """Images pushed to the anonymous registry: repository -> digest."""

    layout: ImageLayout
    single: str
    layers: str
    multi: str
    amd64: str
    arm64: str

    __test__ = False


@pytest.fixture(scope="session")
def images(
    tmp_path_factory: pytest.TempPathFactory, anonymous_registry: RegistryProcess
) -> TestImages:
    layout = ImageLayout(tmp_path_factory.mktemp("images") / "layout")
    layout.build(
        "single",
        layers=[{"hello.txt": b"hello from conveyor\n"}],
        labels={"org.opencontainers.image.title": "single", "team": "conveyor"},
    )
    layout.build(
        "layers",
        layers=[{f"data{i}.bin": random_bytes(200_000 + i, seed=i)} for i in range(4)],
    )
    layout.build("amd64", layers=[{"arch.txt": b"amd64\n"}], architecture="amd64")
    layout.build("arm64", layers=[{"arch.txt": b"arm64\n"}], architecture="arm64")
    layout.write_index("multi", {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")})
    host = anonymous_registry.host
    return TestImages(
        layout=layout,
        single=layout.push("single", f"{host}/src/single:v1"),
        layers=layout.push("layers", f"{host}/src/layers:v1"),
        multi=layout.push("multi", f"{host}/src/multi:v1"),
        amd64=str(layout.descriptor("amd64")["digest"]),
        arm64=str(layout.descriptor("arm64")["digest"]),
    )


@pytest.fixture(scope="session")
def basic_image(basic_registry, images) -> str:
    """The single test image pushed to the Basic-auth registry."""
    return images.layout.push(
        "single", f"{basic_registry.host}/team/app:v1", creds=f"{BASIC_USER}:{BASIC_PASSWORD}"
    )


ClientFactory = Callable[..., DistributionRegistry]


@pytest.fixture
async def client_for(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Build DistributionRegistry clients for test registries; closes them afterwards."""
    clients: list[DistributionRegistry] = []

    def make(
        registry: RegistryProcess,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        credentials: Credentials | None = None,
        token_flow: str = "auto",
        **options: object,
    ) -> DistributionRegistry:
        if username is not None:
            credentials = Credentials(username=username, password=Secret(password or ""))
        endpoint = RegistryEndpoint(
            host=registry.host,
            url=registry.url,
            credentials=credentials,
            ca_file=str(ca_file) if ca_file else None,
            insecure=registry.url.startswith("http:"),
            token_flow=token_flow,  # type: ignore[arg-type]
        )
        options.setdefault("retry", RetryPolicy(attempts=2, base_delay=0.05))
        client = DistributionRegistry(endpoint, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test."""
    return "t/" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:80]
