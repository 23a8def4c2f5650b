"""Property: whatever users do, no gated environment ever holds an unverified digest."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import wiring
from conveyor.config import loader
from conveyor.core import gates
from conveyor.core.errors import ConveyorError
from conveyor.engine.worker import Worker
from conveyor.service import environments, queries, runs
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import HOST, STORY, Clock

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "push",
                "prerelease",
                "production",
                "production-from-registry",
                "approve",
                "reject",
                "rollback",
                "mark-bad",
                "clear-bad",
                "crash",
            ]
        ),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=14,
)


def _check_invariant(services: Services) -> None:
    with unit_of_work(services.engine, read_only=True) as session:
        for environment in services.definitions.environments:
            for deployment in session.scalars(
                sa.select(tables.Deployment).where(
                    tables.Deployment.environment == environment.name
                )
            ):
                verified_in = {
                    r.environment
                    for r in session.scalars(
                        sa.select(tables.VerificationRecord).where(
                            tables.VerificationRecord.digest == deployment.digest,
                            tables.VerificationRecord.verified_at <= deployment.deployed_at,
                        )
                    )
                }
                missing = set(environment.requires) - verified_in
                assert not missing, (
                    f"{environment.name} got {deployment.digest} unverified in {missing}"
                )


class Scenario:
    def __init__(self, directory: Path) -> None:
        self.registry = InMemoryRegistry(host=HOST)
        config = directory / "conveyor.yaml"
        config.write_text(STORY)
        definitions = loader.load(config)
        self.clock = Clock()
        self.services = Services(
            definitions=definitions,
            engine=wiring.open_database(f"sqlite:///{directory / 'state.db'}"),
            registries=wiring.ConfiguredRegistries(
                definitions.registries, {}, lambda d, c: self.registry
            ),
            data_dir=directory / "data",
            clock=self.clock,
        )
        self.worker = Worker(services=self.services, name="w1", lease=timedelta(seconds=30))
        self.versions = 0

    def drain(self) -> None:
        asyncio.run(self.worker.run_until_idle())

    def waiting_runs(self) -> list[int]:
        return [
            r["id"]
            for r in queries.list_runs(self.services, pipeline=None, status="waiting", limit=50)
        ]

    def apply(self, operation: str, pick: int) -> None:
        services = self.services
        if operation == "push":
            self.versions += 1
            self.registry.push("team/myapp", f"myapp-V1.{self.versions}.0", b"v%d" % self.versions)
        elif operation in ("prerelease", "production", "production-from-registry"):
            tags = sorted(t for (_, t) in self.registry.tags if t.startswith("myapp-V"))
            request: dict[str, object] = {}
            if operation == "production-from-registry" and tags:
                request["tag"] = tags[pick % len(tags)]
            if operation == "production" and pick % 2:
                request["from_run"] = pick
            runs.start_run(
                services,
                runs.RunRequest(
                    pipeline=operation if operation != "prerelease" else "prerelease-cd",
                    user="ann",
                    **request,
                ),  # type: ignore[arg-type]
            )
        elif operation in ("approve", "reject"):
            waiting = self.waiting_runs()
            if waiting:
                approver = gates.Approver(user="rita")
                runs.decide(
                    services,
                    waiting[pick % len(waiting)],
                    approver=approver,
                    approved=operation == "approve",
                    comment="",
                )
        elif operation == "rollback":
            environment = ["pre-release", "production"][pick % 2]
            runs.rollback(services, environment, to_run=None, to_digest=None, user="ann")
        elif operation == "mark-bad":
            digests = sorted({str(d) for d in self.registry.tags.values()})
            if digests:
                environments.mark_bad(
                    services, digests[pick % len(digests)], reason="bad", user="sec"
                )
        elif operation == "clear-bad":
            digests = sorted({str(d) for d in self.registry.tags.values()})
            if digests:
                environments.clear_bad(services, digests[pick % len(digests)], user="sec")
        elif operation == "crash":
            self.crash()
        self.drain()

    def crash(self) -> None:
        """A worker claims a run, starts its step, and dies; the lease runs out."""
        dead = Worker(services=self.services, name="dead", lease=timedelta(seconds=30))
        run_id = dead.claim()
        if run_id is None:
            return
        dead._begin_next_step(run_id)
        self.clock.now += timedelta(seconds=31)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(OPERATIONS)
def test_no_unverified_digest_reaches_a_gated_environment(
    operations: list[tuple[str, int]],
) -> None:
    """Random runs, decisions, rollbacks, bad marks and crashes never put an unverified digest in production."""
    with tempfile.TemporaryDirectory() as directory:
        scenario = Scenario(Path(directory))
        for operation, pick in operations:
            with contextlib.suppress(ConveyorError):
                scenario.apply(operation, pick)
            _check_invariant(scenario.services)
        scenario.services.engine.dispose()
