"""The pure core: image references, durations, templates, run states and gates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core import durations, gates, runs, sources, templates
from conveyor.core.errors import InvalidDigest, InvalidImageRef, NotFound, PromotionRefused
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository

HEX = "ee57179a2e86216b08bee6bc4e60a380c4202d19da93c7f59d3788d00424f4d1"
DIGEST = Digest("sha256", HEX)
OTHER = Digest.of(b"other")
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class TestImageRefs:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(
                "127.0.0.1:5000/team/myapp:myapp-V1.4.2",
                ImageRef(Repository("127.0.0.1:5000", "team/myapp"), "myapp-V1.4.2"),
                id="host-port-tag",
            ),
            pytest.param(
                f"registry.example.com/team/myapp@sha256:{HEX}",
                ImageRef(Repository("registry.example.com", "team/myapp"), None, DIGEST),
                id="digest",
            ),
            pytest.param(
                f"localhost/app:v1@sha256:{HEX}",
                ImageRef(Repository("localhost", "app"), "v1", DIGEST),
                id="tag-and-digest",
            ),
            pytest.param(
                "busybox", ImageRef(Repository("docker.io", "library/busybox")), id="docker-hub"
            ),
        ],
    )
    def test_parse(self, text: str, expected: ImageRef) -> None:
        """References parse into registry, repository, tag and digest."""
        assert ImageRef.parse(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param("r.example/Team/App:1", "repository 'Team/App' is not valid", id="upper"),
            pytest.param("r.example/app:-bad", "tag '-bad' is not valid", id="bad-tag"),
            pytest.param("r.example/app@sha256:abc", "sha256 takes 64 lowercase hex", id="short"),
            pytest.param("", "empty image reference", id="empty"),
        ],
    )
    def test_invalid_references_name_the_bad_part(self, text: str, message: str) -> None:
        """An invalid reference raises a typed error naming what is wrong."""
        with pytest.raises((InvalidImageRef, InvalidDigest), match=message):
            ImageRef.parse(text)

    def test_digest_of_bytes(self) -> None:
        """Digest.of hashes exactly the given bytes."""
        assert str(Digest.of(b"{}")) == (
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        )

    def test_pinned_image_through_internal_address(self) -> None:
        """The same digest can be written through another registry address."""
        image = PinnedImage(repository=Repository("r.example", "team/app"), digest=DIGEST)
        assert image.with_address("vpc.internal:5000") == f"vpc.internal:5000/team/app@{DIGEST}"
        assert str(image) == f"r.example/team/app@{DIGEST}"


class TestDurationsAndTemplates:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
    )
    def test_durations(self, text: str, seconds: float) -> None:
        """Durations add up their parts."""
        assert durations.parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "1h 30m"])
    def test_bad_durations(self, text: str) -> None:
        """Text that is not a duration is refused with the valid form."""
        with pytest.raises(ValueError, match="write a number with a unit"):
            durations.parse_duration(text)

    def test_template_renders(self) -> None:
        """Placeholders are filled and $$ is a literal dollar."""
        assert templates.render("myapp-V${R_VERSION}$$", {"R_VERSION": "1.4.2"}) == "myapp-V1.4.2$"

    def test_template_missing_parameter_is_named(self) -> None:
        """A missing parameter is named in the error."""
        with pytest.raises(templates.TemplateError, match="needs parameter\\(s\\) R_VERSION"):
            templates.render("myapp-V${R_VERSION}", {})


class TestRuns:
    def test_fold(self) -> None:
        """Step states fold into the run's state."""
        S = runs.StepStatus
        state = lambda *ss: [runs.StepState(index=i, status=s) for i, s in enumerate(ss)]  # noqa: E731
        assert runs.fold(state(S.SUCCEEDED, S.WAITING)) == runs.RunStatus.WAITING
        assert runs.fold(state(S.SUCCEEDED, S.FAILED, S.SKIPPED)) == runs.RunStatus.FAILED
        assert runs.fold(state(S.SUCCEEDED, S.SUCCEEDED)) == runs.RunStatus.SUCCEEDED
        assert runs.fold(state(S.SUCCEEDED, S.PENDING)) == runs.RunStatus.RUNNING
        assert runs.next_step(state(S.SUCCEEDED, S.PENDING)) == 1

    def test_terminal_runs_do_not_move(self) -> None:
        """A finished run cannot change state again."""
        for status in runs.TERMINAL_RUN_STATES:
            assert not any(runs.can_transition(status, t) for t in runs.RunStatus)

    def test_recovery(self) -> None:
        """After a crash, deploy and verify re-run; other kinds fail as interrupted."""
        assert runs.recover_step("deploy") == runs.StepStatus.PENDING
        assert runs.recover_step("verify") == runs.StepStatus.PENDING
        assert runs.recover_step("command") == runs.StepStatus.FAILED
        assert runs.recover_step("build") == runs.StepStatus.FAILED


def _record(digest: Digest, environment: str) -> gates.VerificationRecord:
    return gates.VerificationRecord(
        digest=digest, environment=environment, run_id=1, verified_at=NOW
    )


class TestPromotion:
    def test_verified_digest_is_allowed(self) -> None:
        """A digest verified in the required environment may deploy."""
        decision = gates.can_deploy(
            DIGEST,
            environment="production",
            requires=["pre-release"],
            records=[_record(DIGEST, "pre-release")],
        )
        assert decision == gates.Allowed()

    def test_unverified_digest_is_refused_with_reason(self) -> None:
        """A digest verified elsewhere only is refused, naming where it was verified."""
        decision = gates.can_deploy(
            DIGEST,
            environment="production",
            requires=["pre-release"],
            records=[_record(DIGEST, "test"), _record(OTHER, "pre-release")],
        )
        assert decision == gates.Refused(
            (
                f"environment 'production' refuses {DIGEST}: not verified in 'pre-release' "
                "(verified in: test)",
            )
        )

    def test_bad_digest_is_refused_everywhere(self) -> None:
        """A digest marked bad is refused even where nothing is required."""
        mark = gates.BadDigest(digest=DIGEST, reason="CVE-2026-1", marked_by="alice")
        decision = gates.can_deploy(DIGEST, environment="test", requires=[], records=[], bad=[mark])
        assert isinstance(decision, gates.Refused)
        assert "marked bad by alice: CVE-2026-1" in decision.reasons[0]


class TestApprovals:
    RULE = gates.ApprovalRule(groups=("qa",), required=2, expires_after=timedelta(hours=1))

    def _decision(self, user: str, approved: bool = True) -> gates.ApprovalDecision:
        return gates.ApprovalDecision(user=user, approved=approved, decided_at=NOW)

    def test_distinct_approvals_are_counted(self) -> None:
        """The same user approving twice counts once."""
        twice = [self._decision("bob"), self._decision("bob")]
        assert gates.evaluate(self.RULE, twice, opened_at=NOW, now=NOW) == gates.Verdict.WAITING
        both = [self._decision("bob"), self._decision("carol")]
        assert gates.evaluate(self.RULE, both, opened_at=NOW, now=NOW) == gates.Verdict.APPROVED

    def test_one_rejection_rejects(self) -> None:
        """A single rejection rejects the gate."""
        decisions = [self._decision("bob"), self._decision("carol", approved=False)]
        verdict = gates.evaluate(self.RULE, decisions, opened_at=NOW, now=NOW)
        assert verdict == gates.Verdict.REJECTED

    def test_expiry(self) -> None:
        """A gate left undecided past its expiry expires."""
        later = NOW + timedelta(hours=1)
        assert gates.evaluate(self.RULE, [], opened_at=NOW, now=later) == gates.Verdict.EXPIRED

    def test_author_may_not_approve_when_forbidden(self) -> None:
        """The run's author is refused when allow_author is false."""
        reason = gates.may_decide(self.RULE, gates.Approver(user="ann"), author="ann")
        assert reason is not None and "forbids the author's approval" in reason

    def test_group_membership(self) -> None:
        """Only members of the named groups may decide."""
        member = gates.Approver(user="bob", groups=frozenset({"qa"}))
        outsider = gates.Approver(user="eve", groups=frozenset({"dev"}))
        assert gates.may_decide(self.RULE, member, author="ann") is None
        assert gates.may_decide(self.RULE, outsider, author="ann") == (
            "'eve' may not decide this gate; allowed: group qa"
        )


def _upstream(run_id: int, status: runs.RunStatus, minute: int) -> sources.UpstreamRun:
    return sources.UpstreamRun(
        id=run_id,
        pipeline="prerelease-cd",
        status=status,
        image=PinnedImage(repository=Repository("r", "team/app"), digest=Digest.of(b"%d" % run_id)),
        registry="main",
        finished_at=NOW + timedelta(minutes=minute),
    )


class TestPipelineSources:
    RUNS = (
        _upstream(1, runs.RunStatus.SUCCEEDED, 1),
        _upstream(2, runs.RunStatus.SUCCEEDED, 2),
        _upstream(3, runs.RunStatus.FAILED, 3),
        _upstream(4, runs.RunStatus.RUNNING, 4),
    )

    def test_default_is_last_successful_run(self) -> None:
        """Without a pick, the last successful upstream run is taken, not a later failed one."""
        assert sources.pick_upstream(self.RUNS, pipeline="prerelease-cd").id == 2

    def test_pick_an_earlier_successful_run(self) -> None:
        """A user may pick any successful run by id."""
        assert sources.pick_upstream(self.RUNS, pipeline="prerelease-cd", run_id=1).id == 1

    @pytest.mark.parametrize(("run_id", "status"), [(3, "failed"), (4, "running")])
    def test_unsuccessful_pick_is_refused(self, run_id: int, status: str) -> None:
        """Picking a failed or unfinished run is refused with its status."""
        with pytest.raises(PromotionRefused, match=f"run {run_id} of 'prerelease-cd' is {status}"):
            sources.pick_upstream(self.RUNS, pipeline="prerelease-cd", run_id=run_id)

    def test_no_successful_run(self) -> None:
        """With no successful upstream run there is nothing to promote."""
        with pytest.raises(PromotionRefused, match="has no successful run yet"):
            sources.pick_upstream(self.RUNS[2:], pipeline="prerelease-cd")

    def test_unknown_run(self) -> None:
        """A run id of another pipeline is not found."""
        with pytest.raises(NotFound, match="run '99' not found"):
            sources.pick_upstream(self.RUNS, pipeline="prerelease-cd", run_id=99)
