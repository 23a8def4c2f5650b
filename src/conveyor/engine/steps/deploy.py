"""`deploy`: roll the run's digest out through a deployer, after re-checking the gates.

Deployers are listed in DEPLOYERS; each takes a PinnedImage, never a tag.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from conveyor.config.steps import DEPLOYERS as DEPLOYER_CONFIGS
from conveyor.config.steps import (
    CommandDeployer,
    DeployStep,
    GitOpsDeployer,
    KubernetesDeployer,
    RegistryDeployer,
    RegistryTagDeployer,
)
from conveyor.core import gates
from conveyor.core.errors import StepFailed
from conveyor.core.images import PinnedImage, Repository
from conveyor.core.runs import StepOutcome, Succeeded
from conveyor.deployers import gitops, kubernetes
from conveyor.engine.context import StepContext
from conveyor.engine.steps._process import run_process
from conveyor.engine.steps.command import render, timeout_of

Deploy = Callable[[StepContext, DeployStep, PinnedImage, str], Awaitable[dict[str, str]]]


async def deploy_command(
    step: StepContext, config: DeployStep, image: PinnedImage, reference: str
) -> dict[str, str]:
    """Run a command with CONVEYOR_IMAGE set to the address-specific digest reference."""
    settings = CommandDeployer.model_validate(config.with_)
    env = {**step.environ(), "CONVEYOR_IMAGE": reference}
    if config.dry_run:
        step.log(f"dry run: would run {settings.run!r} with CONVEYOR_IMAGE={reference}")
        return {"dry_run": "true", "image": reference}
    code = await run_process(
        settings.run,
        env=env,
        cwd=step.workdir,
        log=step.log,
        timeout=timeout_of(config, DeployRunner.default_timeout),
        what="deploy command",
        track=step.track_process,
    )
    if code != 0:
        raise StepFailed(f"deploy command exited with code {code}")
    return {"image": reference}


async def deploy_registry_tag(
    step: StepContext, config: DeployStep, image: PinnedImage, reference: str
) -> dict[str, str]:
    """Move an environment tag (e.g. pre-release) onto exactly this digest."""
    settings = RegistryTagDeployer.model_validate(config.with_)
    tag = render(settings.tag, step)
    target = f"{image.repository}:{tag}"
    if config.dry_run:
        step.log(f"dry run: would point {target} at {image.digest}")
        return {"dry_run": "true", "tag": tag}
    if step.source_registry is None:
        raise StepFailed("the run's image has no configured registry to tag in")
    client = step.registries.client(step.source_registry)
    moved = await client.copy(image, to=image.repository, tag=tag)
    if moved.digest != image.digest:
        raise StepFailed(f"{target} points at {moved.digest} after tagging, not {image.digest}")
    step.log(f"tagged {target} -> {image.digest}")
    return {"tag": tag, "image": reference}


async def deploy_gitops(
    step: StepContext, config: DeployStep, image: PinnedImage, reference: str
) -> dict[str, str]:
    """Commit the digest to a git repository (kustomize, Helm values or any YAML file)."""
    settings = GitOpsDeployer.model_validate(config.with_)
    repository = settings.repository
    if "://" not in repository and not repository.startswith("git@"):
        repository = str((step.config_dir / repository).resolve())
        settings = settings.model_copy(update={"repository": repository})
    token = step.secret(settings.credentials_env) if settings.credentials_env else None
    if settings.credentials_env and token is None:
        raise StepFailed(
            f"gitops: environment variable {settings.credentials_env} (credentials_env) is not set"
        )
    checkout = step.workdir / f"gitops-{step.step_index}"
    if checkout.exists():
        shutil.rmtree(checkout)
    env = {**step.environ(), **gitops.git_environment(settings, token)}

    async def run_git(args: Sequence[str], cwd: Path) -> tuple[int, str]:
        lines: list[str] = []

        def keep(line: str, *, stream: str = "stdout") -> None:
            lines.append(line)
            step.log(line, stream=stream)

        code = await run_process(
            ["git", *args],
            env=env,
            cwd=cwd,
            log=keep,
            timeout=300,
            what=f"git {args[0]}",
            track=step.track_process,
        )
        return code, "\n".join(lines)

    change = gitops.Change(image=image, reference=reference)
    deploy = gitops.GitOpsDeploy(
        settings=settings,
        change=change,
        checkout=checkout,
        run_git=run_git,
        message=gitops.commit_message(
            pipeline=step.pipeline, run_id=step.run_id, change=change, approvers=step.approvers
        ),
        branch_for_review=f"conveyor/{step.pipeline}-run-{step.run_id}",
        log=step.log,
    )
    return await deploy.run(dry_run=config.dry_run)


async def deploy_registry(
    step: StepContext, config: DeployStep, image: PinnedImage, reference: str
) -> dict[str, str]:
    """Copy the digest into another repository or registry, optionally tagged; checked."""
    settings = RegistryDeployer.model_validate(config.with_)
    if step.source_registry is None:
        raise StepFailed("the run's image has no configured registry to copy from")
    target_name = settings.registry or step.source_registry
    target = step.registries.definition(target_name)
    to = Repository(target.host, settings.repository or image.repository.name)
    tag = render(settings.tag, step) if settings.tag else None
    shown = f"{to}:{tag}" if tag else f"{to}@{image.digest}"
    if config.dry_run:
        step.log(f"dry run: would copy {image} to {shown}")
        return {"dry_run": "true", "destination": shown}
    if target_name != step.source_registry:
        copied = await step.registries.transfer(
            image, source=step.source_registry, destination=target_name, to=to, tag=tag
        )
    else:
        copied = await step.registries.client(target_name).copy(image, to=to, tag=tag)
    if copied.digest != image.digest:
        raise StepFailed(f"{shown} holds {copied.digest} after the copy, not {image.digest}")
    step.log(f"copied {image} to {shown}")
    return {"destination": shown, "image": f"{to}@{image.digest}"}


async def deploy_kubernetes(
    step: StepContext, config: DeployStep, image: PinnedImage, reference: str
) -> dict[str, str]:
    """Set a workload's image to the digest reference and wait for the rollout."""
    settings = KubernetesDeployer.model_validate(config.with_)
    deployer = kubernetes.KubernetesDeployer(settings, config_dir=step.config_dir)
    rollout = kubernetes.Rollout(
        image=image,
        reference=reference,
        run_id=step.run_id,
        timeout=timeout_of(config, DeployRunner.default_timeout),
        dry_run=config.dry_run,
        log=step.log,
        now=step.now,
        sleep=step.sleep,
    )
    return await deployer.deploy(rollout)


DEPLOYERS: dict[str, Deploy] = {
    "command": deploy_command,
    "gitops": deploy_gitops,
    "registry": deploy_registry,
    "registry-tag": deploy_registry_tag,
    "kubernetes": deploy_kubernetes,
}


class DeployRunner:
    kind: ClassVar[str] = "deploy"
    default_timeout: ClassVar[timedelta | None] = timedelta(minutes=30)
    error_threshold: ClassVar[int] = 3

    async def run(self, step: StepContext) -> StepOutcome:
        config = step.config
        assert isinstance(config, DeployStep)
        image = step.image
        if image is None:
            raise StepFailed("nothing to deploy: the run has no image (give it a source or build)")
        if step.check_promotion is not None:
            decision = step.check_promotion()
            if isinstance(decision, gates.Refused):
                raise StepFailed("; ".join(decision.reasons))
        deploy = DEPLOYERS.get(config.deployer)
        if deploy is None:
            known = ", ".join(DEPLOYERS)
            raise StepFailed(
                f"deployer '{config.deployer}' is not available in this version of Conveyor "
                f"(available: {known}; configurable: {', '.join(DEPLOYER_CONFIGS)})"
            )
        reference = self._reference(step, config, image)
        step.log(f"deploying {reference} ({config.deployer})")
        output = await deploy(step, config, image, reference)
        return Succeeded(output={"deployer": config.deployer, **output})

    def _reference(self, step: StepContext, config: DeployStep, image: PinnedImage) -> str:
        if config.address == "internal" and step.source_registry is not None:
            host = step.registries.definition(step.source_registry).internal_host
            if host is not None:
                return image.with_address(host)
        return str(image)
