"""The GitOps deployer against real git repositories on disk (bare 'remote' plus clones)."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import steps
from conveyor.core.errors import StepFailed
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.core.runs import Succeeded
from conveyor.deployers import gitops
from conveyor.engine.context import StepContext
from conveyor.engine.steps.table import RUNNERS

IMAGE = PinnedImage(
    repository=Repository("registry.example.com", "team/myapp"),
    digest=Digest.of(b"myapp 1.4.2"),
    tag="myapp-V1.4.2",
)
INTERNAL = f"registry-vpc.internal:5000/team/myapp@{IMAGE.digest}"
KUSTOMIZATION = textwrap.dedent(
    """\
    # production overlay
    apiVersion: kustomize.config.k8s.io/v1beta1
    kind: Kustomization
    resources:
      - ../../base   # shared manifests
    images:
      - name: team/myapp        # the app
        newName: registry.example.com/team/myapp
        newTag: myapp-V1.0.0
      - name: sidecar
        newTag: "3"
    """
)
VALUES = textwrap.dedent(
    """\
    replicaCount: 3  # keep three
    image:
      # set by Conveyor
      repository: registry.example.com/team/myapp
      digest: ""
      pullPolicy: IfNotPresent
    """
)
DEPLOYMENT = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    spec:
      template:
        spec:
          containers:
            - name: myapp
              image: registry.example.com/team/myapp:old   # replaced by Conveyor
    """
)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose main branch holds an overlay, a values file and a manifest."""
    bare = tmp_path / "deploy.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    work = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(work), cwd=tmp_path)
    (work / "overlays" / "production").mkdir(parents=True)
    (work / "overlays" / "production" / "kustomization.yaml").write_text(KUSTOMIZATION)
    (work / "values.yaml").write_text(VALUES)
    (work / "deployment.yaml").write_text(DEPLOYMENT)
    git("add", ".", cwd=work)
    git(
        "-c",
        "user.name=Seed",
        "-c",
        "user.email=seed@example.com",
        "commit",
        "--quiet",
        "-m",
        "seed",
        cwd=work,
    )
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return bare


def show(remote: Path, path: str, ref: str = "main") -> str:
    return git("show", f"{ref}:{path}", cwd=remote)


class _Registries:
    def client(self, name: str) -> Any:
        raise AssertionError("not used")

    def definition(self, name: str) -> Any:
        raise AssertionError("not used")

    def credentials(self, name: str) -> None:
        return None


def _deploy(
    tmp_path: Path,
    with_: dict[str, Any],
    *,
    dry_run: bool = False,
    base_env: dict[str, str] | None = None,
) -> tuple[Any, list[str]]:
    lines: list[str] = []
    config = steps.DeployStep.model_validate(
        {
            "type": "deploy",
            "deployer": "gitops",
            "address": "internal",
            "dry_run": dry_run,
            "with": with_,
        }
    )
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)

    async def sleep(seconds: float) -> None:
        return None

    context = StepContext(
        run_id=12,
        pipeline="production",
        environment="production",
        step_index=1,
        step_name="gitops",
        config=config,
        image=IMAGE,
        source_registry="main",
        parameters={},
        author="ann",
        log=lambda line, stream="stdout": lines.append(line),
        workdir=workdir,
        registries=_Registries(),
        now=lambda: datetime.now(UTC),
        sleep=sleep,
        base_env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(base_env or {})},
        approvers=("rita", "quinn"),
    )
    # The step's reference is chosen by the deploy runner; here the internal address.
    from conveyor.engine.steps import deploy

    outcome = asyncio.run(deploy.deploy_gitops(context, config, IMAGE, INTERNAL))
    return outcome, lines


class TestEdits:
    def test_kustomization_keeps_comments_and_sets_the_digest(self) -> None:
        """The images entry gets newName and digest; its tag goes; every comment stays."""
        settings = steps.GitOpsDeployer(repository="x", kustomization="k.yaml")
        text = gitops.edit_text(
            KUSTOMIZATION, settings, gitops.Change(image=IMAGE, reference=INTERNAL)
        )
        assert text == KUSTOMIZATION.replace(
            "    newName: registry.example.com/team/myapp\n    newTag: myapp-V1.0.0\n",
            f"    newName: registry-vpc.internal:5000/team/myapp\n    digest: {IMAGE.digest}\n",
        )

    def test_helm_values_and_any_yaml_path(self) -> None:
        """A values key gets repository and digest; a path expression gets the full reference."""
        change = gitops.Change(image=IMAGE, reference=INTERNAL)
        values = gitops.edit_text(
            VALUES, steps.GitOpsDeployer(repository="x", helm_values="v.yaml", key="image"), change
        )
        assert "# set by Conveyor" in values and "replicaCount: 3  # keep three" in values
        assert f'digest: "{IMAGE.digest}"' in values  # the quoting it had stays
        assert "repository: registry-vpc.internal:5000/team/myapp" in values
        manifest = gitops.edit_text(
            DEPLOYMENT,
            steps.GitOpsDeployer(
                repository="x", file="d.yaml", key="spec.template.spec.containers[0].image"
            ),
            change,
        )
        # The comment stays; ruamel moves it right when the longer value reaches it.
        assert f"image: {INTERNAL} # replaced by Conveyor" in manifest

    def test_nothing_to_change_returns_the_same_text(self) -> None:
        """Editing a file that already holds the digest changes nothing."""
        settings = steps.GitOpsDeployer(
            repository="x", file="d.yaml", key="spec.template.spec.containers[0].image"
        )
        change = gitops.Change(image=IMAGE, reference=INTERNAL)
        once = gitops.edit_text(DEPLOYMENT, settings, change)
        assert gitops.edit_text(once, settings, change) == once

    def test_missing_entry_is_named(self) -> None:
        """A kustomization without the image entry fails, listing the entries it has."""
        settings = steps.GitOpsDeployer(repository="x", kustomization="k", image_name="nope")
        with pytest.raises(
            StepFailed, match=r"no images\[\] entry named 'nope' .entries: team/myapp, sidecar"
        ):
            gitops.edit_text(
                KUSTOMIZATION, settings, gitops.Change(image=IMAGE, reference=INTERNAL)
            )


class TestDeploy:
    def test_commit_and_push_with_message_and_author(self, remote: Path, tmp_path: Path) -> None:
        """The overlay on main gets the digest, in one commit naming pipeline, run, tag, approvers."""
        outcome, _ = _deploy(
            tmp_path,
            {"repository": str(remote), "kustomization": "overlays/production/kustomization.yaml"},
        )
        assert outcome["changed"] == "true" and outcome["branch"] == "main"
        overlay = show(remote, "overlays/production/kustomization.yaml")
        assert f"digest: {IMAGE.digest}" in overlay and "# production overlay" in overlay
        message = git("log", "-1", "--format=%an <%ae>%n%B", "main", cwd=remote)
        assert message.startswith("Conveyor <conveyor@localhost>\n")
        assert f"Deploy team/myapp@{IMAGE.digest} (production, run 12)" in message
        assert "Tag: myapp-V1.4.2" in message and "Approved by: rita, quinn" in message
        assert outcome["commit"] == git("rev-parse", "main", cwd=remote).strip()

    def test_second_deploy_of_the_same_digest_commits_nothing(
        self, remote: Path, tmp_path: Path
    ) -> None:
        """Deploying the digest already in the file succeeds without a commit."""
        with_ = {"repository": str(remote), "helm_values": "values.yaml", "key": "image"}
        _deploy(tmp_path, with_)
        head = git("rev-parse", "main", cwd=remote)
        outcome, lines = _deploy(tmp_path, with_)
        assert outcome == {"commit": "", "changed": "false"}
        assert git("rev-parse", "main", cwd=remote) == head
        assert any("no commit" in line for line in lines)

    def test_dry_run_prints_the_diff_and_pushes_nothing(self, remote: Path, tmp_path: Path) -> None:
        """A dry run shows the exact change and leaves the repository alone."""
        head = git("rev-parse", "main", cwd=remote)
        outcome, lines = _deploy(
            tmp_path,
            {
                "repository": str(remote),
                "file": "deployment.yaml",
                "key": "spec.template.spec.containers[0].image",
            },
            dry_run=True,
        )
        assert outcome["dry_run"] == "true"
        assert any(line.startswith(f"+          image: {INTERNAL}") for line in lines)
        assert git("rev-parse", "main", cwd=remote) == head

    def test_new_branch_for_review(self, remote: Path, tmp_path: Path) -> None:
        """With push_to_new_branch, main stays and a review branch holds the change."""
        outcome, _ = _deploy(
            tmp_path,
            {
                "repository": str(remote),
                "helm_values": "values.yaml",
                "key": "image",
                "push_to_new_branch": True,
            },
        )
        assert outcome["branch"] == "conveyor/production-run-12"
        assert show(remote, "values.yaml") == VALUES
        assert str(IMAGE.digest) in show(remote, "values.yaml", "conveyor/production-run-12")

    def test_concurrent_push_between_fetch_and_push_is_retried(
        self, remote: Path, tmp_path: Path
    ) -> None:
        """Another clone pushing first makes Conveyor fetch, re-apply on top and push again."""
        other = tmp_path / "other"
        git("clone", "--quiet", str(remote), str(other), cwd=tmp_path)
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        marker = tmp_path / "raced"
        (hooks / "pre-push").write_text(
            textwrap.dedent(
                f"""\
                #!/bin/sh
                # Once: another team member pushes to main while Conveyor is pushing.
                [ -e {marker} ] && exit 0
                touch {marker}
                unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
                cd {other} && echo "replicaCount: 5" > other.yaml && git add other.yaml &&
                  git -c user.name=Other -c user.email=o@example.com commit -q -m other &&
                  git push -q origin HEAD:main
                """
            )
        )
        (hooks / "pre-push").chmod(0o755)
        gitconfig = tmp_path / "gitconfig"
        gitconfig.write_text(f"[core]\n\thooksPath = {hooks}\n")
        outcome, lines = _deploy(
            tmp_path,
            {"repository": str(remote), "kustomization": "overlays/production/kustomization.yaml"},
            base_env={"GIT_CONFIG_GLOBAL": str(gitconfig)},
        )
        assert any("push rejected (attempt 1 of 3)" in line for line in lines)
        assert outcome["changed"] == "true"
        history = git("log", "--format=%s", "main", cwd=remote).splitlines()
        assert history[0].startswith("Deploy team/myapp@") and history[1] == "other"
        assert show(remote, "other.yaml") == "replicaCount: 5\n"
        assert str(IMAGE.digest) in show(remote, "overlays/production/kustomization.yaml")


def test_runner_reports_gitops_changes(remote: Path, tmp_path: Path) -> None:
    """The deploy step with the gitops deployer succeeds and reports the commit."""
    config = steps.DeployStep.model_validate(
        {
            "type": "deploy",
            "deployer": "gitops",
            "with": {"repository": str(remote), "helm_values": "values.yaml", "key": "image"},
        }
    )
    workdir = tmp_path / "w"
    workdir.mkdir()

    async def sleep(seconds: float) -> None:
        return None

    context = StepContext(
        run_id=3,
        pipeline="pre",
        environment="pre-release",
        step_index=0,
        step_name="d",
        config=config,
        image=IMAGE,
        source_registry=None,
        parameters={},
        author="ann",
        log=lambda line, stream="stdout": None,
        workdir=workdir,
        registries=_Registries(),
        now=lambda: datetime.now(UTC),
        sleep=sleep,
        base_env={"PATH": "/usr/bin:/bin"},
    )
    outcome = asyncio.run(RUNNERS["deploy"].run(context))
    assert isinstance(outcome, Succeeded)
    assert outcome.output["deployer"] == "gitops" and len(outcome.output["commit"]) == 40
    assert f"repository: {IMAGE.repository}" in show(remote, "values.yaml")
