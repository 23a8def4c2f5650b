"""`newest` against a registry: creation times are read for at most max_candidates tags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from conveyor.service import selection
from conveyor.service.context import Services
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import HOST

BASE = datetime(2026, 5, 1, tzinfo=UTC)


def _config(policy: str) -> str:
    return f"""\
registries:
  main: {{url: "https://{HOST}"}}
environments:
  - name: test
sources:
  myapp:
    registry: main
    repository: team/myapp
    filter: {{glob: 'build-*'}}
    policy: {policy}
pipelines:
  deploy:
    environment: test
    source: {{artifact: myapp}}
    steps:
      - {{type: command, run: "true"}}
"""


def _select(services: Services) -> tuple[str | None, str, dict[str, str]]:
    artifact = services.definitions.sources["myapp"]
    chosen, _ = asyncio.run(selection.select_tag(services.registries, artifact))
    reasons = {row.tag: row.reason for row in chosen.rows()}
    return (chosen.winner.tag if chosen.winner else None), chosen.reason, reasons


def test_newest_reads_creation_times_from_the_registry(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """The newest image wins even when its tag is not the greatest; unknown times are skipped."""
    services = make_services(_config("{newest: {}}"))
    registry.push("team/myapp", "build-9", b"9", created=BASE)
    registry.push("team/myapp", "build-10", b"10", created=BASE + timedelta(hours=2))
    registry.push("team/myapp", "build-11", b"11", created=BASE + timedelta(hours=1))
    registry.push("team/myapp", "build-12", b"12")  # a config without `created`
    registry.push("team/myapp", "latest", b"latest", created=BASE + timedelta(days=1))
    winner, reason, reasons = _select(services)
    assert winner == "build-10"
    assert reason.startswith("newest creation time (inspected 4 tags, max_candidates 100)")
    assert reasons["build-12"] == "skipped: creation time unknown"
    assert registry.config_reads == 4  # `latest` is not a candidate, so not read


def test_newest_caps_the_reads_and_says_so(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Only max_candidates tags (the greatest strings) are read; the others are shown as such."""
    services = make_services(_config("{newest: {max_candidates: 2}}"))
    registry.push("team/myapp", "build-1", b"1", created=BASE + timedelta(days=9))
    registry.push("team/myapp", "build-2", b"2", created=BASE)
    registry.push("team/myapp", "build-3", b"3", created=BASE + timedelta(hours=1))
    winner, reason, reasons = _select(services)
    assert winner == "build-3"
    assert reason.startswith("newest creation time (inspected 2 tags, max_candidates 2)")
    assert reasons["build-1"].startswith("not inspected: only the 2 greatest tags")
    assert registry.config_reads == 2


def test_other_policies_read_no_configs(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Policies that do not order by time cost no config reads."""
    services = make_services(_config("{alphabetical: {}}"))
    registry.push("team/myapp", "build-1", b"1", created=BASE)
    registry.push("team/myapp", "build-2", b"2", created=BASE)
    assert _select(services)[0] == "build-2"
    assert registry.config_reads == 0
