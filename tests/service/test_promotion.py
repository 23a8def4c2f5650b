"""The promotion story through the use cases and the worker, on real SQLite."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.core import gates
from conveyor.core.errors import Conflict, PromotionRefused
from conveyor.engine.worker import Worker
from conveyor.service import environments, queries, runs
from conveyor.service.context import Services
from conveyor.testing import InMemoryRegistry

ANN = gates.Approver(user="ann")
RITA = gates.Approver(user="rita")


def start(services: Services, pipeline: str, **kwargs: object) -> int:
    return runs.start_run(services, runs.RunRequest(pipeline=pipeline, user="ann", **kwargs))  # type: ignore[arg-type]


def drain(worker: Worker) -> None:
    asyncio.run(worker.run_until_idle())


def status(services: Services, run_id: int) -> str:
    return str(queries.show_run(services, run_id)["status"])


def promote_to_prerelease(services: Services, worker: Worker, **kwargs: object) -> int:
    run_id = start(services, "prerelease-cd", **kwargs)
    drain(worker)
    assert status(services, run_id) == "waiting"
    runs.decide(services, run_id, approver=ANN, approved=True, comment="verification passed")
    drain(worker)
    assert status(services, run_id) == "succeeded"
    return run_id


class TestStory:
    def test_production_gets_the_digest_that_passed_prerelease(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """Production runs exactly the digest verified in pre-release, by digest."""
        pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        registry.push("team/myapp", "other-9.9.9", b"other")
        promote_to_prerelease(services, worker)
        assert registry.tags[("team/myapp", "pre-release")] == pushed.digest

        production = start(services, "production")
        drain(worker)
        runs.decide(services, production, approver=RITA, approved=True, comment="ship it")
        drain(worker)
        assert status(services, production) == "succeeded"
        assert registry.tags[("team/myapp", "production")] == pushed.digest
        now = queries.show_environment(services, "production")
        assert now["digest"] == str(pushed.digest)
        assert now["run_id"] == production

    def test_failed_newer_prerelease_run_is_not_promoted(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """After a newer pre-release run fails, production still takes the last successful one."""
        v1 = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        first = promote_to_prerelease(services, worker)
        registry.push("team/myapp", "myapp-V1.1.0", b"v1.1")
        failing = start(services, "prerelease-cd")
        drain(worker)
        runs.decide(services, failing, approver=ANN, approved=False, comment="broken login")
        drain(worker)
        assert status(services, failing) == "failed"

        production = start(services, "production")
        view = queries.show_run(services, production)
        assert view["upstream_run"] == first
        assert view["digest"] == str(v1.digest)


class TestRefusals:
    def test_unverified_digest_is_refused_for_production(
        self, services: Services, registry: InMemoryRegistry
    ) -> None:
        """A production run for a digest never verified in pre-release is refused; nothing changes."""
        registry.push("team/myapp", "myapp-V2.0.0", b"v2")
        with pytest.raises(PromotionRefused, match="not verified in 'pre-release'"):
            start(services, "production-from-registry", tag="myapp-V2.0.0")
        assert queries.list_runs(services, pipeline=None, status=None, limit=10) == []
        assert queries.show_environment(services, "production")["digest"] is None

    def test_author_may_not_approve_when_forbidden(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """The run's author cannot pass a gate that forbids it; the run keeps waiting."""
        registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        promote_to_prerelease(services, worker)
        production = start(services, "production")
        drain(worker)
        with pytest.raises(PromotionRefused, match="'ann' started this run"):
            runs.decide(services, production, approver=ANN, approved=True, comment="me")
        assert status(services, production) == "waiting"
        assert queries.show_environment(services, "production")["digest"] is None

    def test_bad_digest_is_refused(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """A digest marked bad is refused even after it was verified."""
        pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        promote_to_prerelease(services, worker)
        environments.mark_bad(services, str(pushed.digest), reason="CVE-2026-0001", user="sec")
        with pytest.raises(PromotionRefused, match="marked bad by sec: CVE-2026-0001"):
            start(services, "production")

    def test_tag_outside_the_filter_is_refused(
        self, services: Services, registry: InMemoryRegistry
    ) -> None:
        """A user-picked tag that the source's filter rejects is refused with the reason."""
        registry.push("team/myapp", "other-1.0.0", b"o")
        with pytest.raises(
            PromotionRefused,
            match=r"source 'myapp': tag 'other-1\.0\.0' is refused by the source's filter: does not match",
        ):
            start(services, "prerelease-cd", tag="other-1.0.0")

    def test_failed_upstream_run_picked_by_id_is_refused(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """Picking a failed pre-release run for production is refused."""
        registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        failing = start(services, "prerelease-cd")
        drain(worker)
        runs.decide(services, failing, approver=ANN, approved=False, comment="no")
        drain(worker)
        with pytest.raises(PromotionRefused, match=f"run {failing} of 'prerelease-cd' is failed"):
            start(services, "production", from_run=failing)

    def test_deploy_rechecks_gates_just_before_deploying(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """A digest marked bad after its run started is still not deployed."""
        pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        promote_to_prerelease(services, worker)
        production = start(services, "production")
        drain(worker)
        environments.mark_bad(services, str(pushed.digest), reason="found a leak", user="sec")
        runs.decide(services, production, approver=RITA, approved=True, comment="")
        drain(worker)
        view = queries.show_run(services, production)
        assert view["status"] == "failed"
        assert "marked bad by sec: found a leak" in view["error"]
        assert ("team/myapp", "production") not in registry.tags

    def test_second_decision_by_same_user_is_refused(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """Nobody decides the same gate twice."""
        registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        promote_to_prerelease(services, worker)
        production = start(services, "production")
        drain(worker)
        runs.decide(services, production, approver=RITA, approved=False, comment="wait")
        with pytest.raises(Conflict):
            runs.decide(services, production, approver=RITA, approved=True, comment="ok now")


class TestEnvironments:
    def test_history_and_rollback(
        self, services: Services, worker: Worker, registry: InMemoryRegistry
    ) -> None:
        """Rollback redeploys the previous digest through the same gates and records it."""
        v1 = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        promote_to_prerelease(services, worker)
        v2 = registry.push("team/myapp", "myapp-V1.1.0", b"v2")
        promote_to_prerelease(services, worker)
        assert queries.show_environment(services, "pre-release")["digest"] == str(v2.digest)

        rollback = runs.rollback(services, "pre-release", to_run=None, to_digest=None, user="ann")
        drain(worker)
        runs.decide(services, rollback, approver=ANN, approved=True, comment="")
        drain(worker)
        history = queries.environment_history(services, "pre-release")
        assert [h["digest"] for h in history] == [str(v1.digest), str(v2.digest), str(v1.digest)]
        assert history[0]["kind"] == "rollback"
        assert registry.tags[("team/myapp", "pre-release")] == v1.digest
