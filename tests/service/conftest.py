"""Service tests: real SQLite in tmp_path, the in-memory registry fake for the ports."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor import wiring
from conveyor.config import loader
from conveyor.engine.worker import Worker
from conveyor.service.context import Services
from conveyor.testing import InMemoryRegistry

HOST = "registry.test:5000"

STORY = textwrap.dedent(
    f"""\
    registries:
      main: {{url: "https://{HOST}"}}
    environments:
      - name: test
      - name: pre-release
      - name: production
        requires: pre-release
    sources:
      myapp:
        registry: main
        repository: team/myapp
        filter: {{pattern: '^myapp-V(?P<version>.+)$', extract: '$version'}}
        policy: {{semver: {{}}}}
    pipelines:
      prerelease-cd:
        environment: pre-release
        source: {{artifact: myapp}}
        steps:
          - {{name: deploy, type: deploy, deployer: registry-tag, with: {{tag: pre-release}}}}
          - {{name: verification passed, type: approval, allow_author: true}}
      production:
        environment: production
        source: {{pipeline: prerelease-cd}}
        steps:
          - {{name: release approval, type: approval, approvers: {{users: [rita]}}}}
          - {{name: deploy, type: deploy, deployer: registry-tag, with: {{tag: production}}}}
      production-from-registry:
        environment: production
        source: {{artifact: myapp}}
        steps:
          - {{name: deploy, type: deploy, deployer: registry-tag, with: {{tag: production}}}}
    """
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry(host=HOST)


@pytest.fixture
def make_services(tmp_path: Path, registry: InMemoryRegistry) -> Callable[[str], Services]:
    def make(config_text: str = STORY) -> Services:
        config = tmp_path / "conveyor.yaml"
        config.write_text(config_text)
        definitions = loader.load(config)
        return Services(
            definitions=definitions,
            engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
            registries=wiring.ConfiguredRegistries(
                definitions.registries, {}, lambda definition, credentials: registry
            ),
            data_dir=tmp_path / "data",
            clock=Clock(),
        )

    return make


@pytest.fixture
def services(make_services: Callable[[str], Services]) -> Services:
    return make_services(STORY)


@pytest.fixture
def worker(services: Services) -> Worker:
    return Worker(services=services, name="test-worker")
