"""Pipeline step configs: one strict model per step type, one per deployer.

The tables STEP_TYPES and DEPLOYERS are the registry of what a definition may
name; the engine attaches a runner to each kind. Config is checked when the
definition is loaded, never when the step runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from conveyor.config.fields import Duration, Regex, Template
from conveyor.config.strict import Strict
from conveyor.core import durations, gates

STEP_TAG = "step:"


class StepCommon(Strict):
    name: str | None = Field(
        None, description="Name shown in logs and the UI; defaults to the type."
    )
    timeout: Duration | None = Field(None, description="Fail the step after this long, e.g. '10m'.")


class CommandStep(StepCommon):
    """Run a shell command with the run's image in its environment."""

    type: Literal["command"]
    run: str = Field(description="Shell command; CONVEYOR_IMAGE, CONVEYOR_DIGEST, ... are set.")
    env: dict[str, Template] = Field(default_factory=dict, description="Extra environment.")
    workdir: str | None = None


class GitSource(Strict):
    url: str = Field(description="Repository URL or local path.")
    branch: str = Field("master", description="Branch to build.")
    credentials_env: str | None = Field(None, description="Variable holding a token for https.")


class BuildStep(StepCommon):
    """Build an image, push it, and make the pushed digest the run's image."""

    type: Literal["build"]
    context: str | None = Field(None, description="Local build context directory.")
    git: GitSource | None = Field(None, description="Build from this repository and branch.")
    containerfile: str = Field("Containerfile", description="Path inside the context.")
    registry: str = Field(description="Name of a configured registry to push to.")
    repository: str = Field(description="Repository to push to, e.g. team/myapp.")
    tag: Template = Field(description="Tag template, e.g. 'myapp-V${R_VERSION}'.")
    builder: Literal["buildah", "docker", "kaniko", "custom"] = "buildah"
    command: str | None = Field(None, description="Builder command template when builder=custom.")
    build_args: dict[str, Template] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_context(self) -> BuildStep:
        if (self.context is None) == (self.git is None):
            raise ValueError(
                "give exactly one of 'context' (a directory) or 'git' (url and branch)"
            )
        if self.builder == "custom" and not self.command:
            raise ValueError("builder 'custom' needs 'command'")
        return self


Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]


def _critical_only() -> list[Severity]:
    return ["CRITICAL"]


class ScanPolicy(Strict):
    fail_on: list[Severity] = Field(
        default_factory=_critical_only, description="Severities that fail the gate."
    )
    ignore_unfixed: bool = False
    allow: list[str] = Field(default_factory=list, description="Finding ids to accept.")
    secrets: bool = Field(True, description="Any secret finding fails the gate.")


class ScanStep(StepCommon):
    """Scan the run's image and gate on the result."""

    type: Literal["scan"]
    scanner: Literal["trivy", "registry"] = "trivy"
    policy: ScanPolicy = Field(default_factory=ScanPolicy)


class Approvers(Strict):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class ApprovalStep(StepCommon):
    """A manual gate such as "verification passed"."""

    type: Literal["approval"]
    approvers: Approvers = Field(default_factory=Approvers, description="Who may decide.")
    required: int = Field(1, ge=1, description="Distinct approvals needed.")
    allow_author: bool = Field(False, description="May the run's author approve?")
    expires: Duration | None = Field(None, description="Fail the gate after this long.")

    def rule(self) -> gates.ApprovalRule:
        """The gate's rule as a core value."""
        return gates.ApprovalRule(
            users=tuple(self.approvers.users),
            groups=tuple(self.approvers.groups),
            required=self.required,
            allow_author=self.allow_author,
            expires_after=durations.parse_duration(self.expires) if self.expires else None,
        )


class HttpCheck(Strict):
    url: Template
    expect_status: int = Field(200, ge=100, le=599)
    body_regex: Regex | None = None
    retries: int = Field(5, ge=0)
    interval: Duration = "10s"


class VerifyStep(StepCommon):
    """Check the deployment: an HTTP probe or a command."""

    type: Literal["verify"]
    http: HttpCheck | None = None
    run: str | None = Field(None, description="Command; exit 0 passes.")

    @model_validator(mode="after")
    def _one_check(self) -> VerifyStep:
        if (self.http is None) == (self.run is None):
            raise ValueError("give exactly one of 'http' or 'run'")
        return self


class CommandDeployer(Strict):
    run: str = Field(description="Shell command; CONVEYOR_IMAGE holds registry/repo@sha256:...")


class RegistryTagDeployer(Strict):
    tag: Template = Field(description="Environment tag to move onto the digest, e.g. pre-release.")


class RegistryDeployer(Strict):
    registry: str | None = Field(None, description="Destination registry (default: the source's).")
    repository: str | None = Field(None, description="Destination repository.")
    tag: Template | None = None


class KubernetesDeployer(Strict):
    kubeconfig: str | None = Field(
        None,
        description="Kubeconfig path (relative to the config files); default: in-cluster "
        "service account, else $KUBECONFIG or ~/.kube/config.",
    )
    context: str | None = Field(None, description="Kubeconfig context; default: current-context.")
    namespace: str = Field("default", description="Namespace of the workload.")
    kind: Literal["Deployment", "StatefulSet", "DaemonSet", "CronJob"] = Field(
        "Deployment", description="Kind of the workload."
    )
    name: str = Field(description="Name of the workload.")
    container: str | None = Field(None, description="Default: every container of this repository.")
    rollback_on_failure: bool = Field(
        False, description="When the rollout fails, set the previous images back and wait for that."
    )
    check_pods: bool = Field(
        True,
        description="After the rollout, check that the pods' imageID carries the digest "
        "(skipped with a log line where listing pods is forbidden).",
    )


class GitOpsDeployer(Strict):
    repository: str = Field(description="Git URL or local path.")
    branch: str = "main"
    credentials_env: str | None = None
    kustomization: str | None = Field(None, description="Path of a kustomization.yaml to edit.")
    image_name: str | None = Field(None, description="The images[].name entry to change.")
    helm_values: str | None = Field(None, description="Path of a Helm values file to edit.")
    key: str | None = Field(None, description="Dotted key path in the values file.")
    file: str | None = Field(None, description="Any YAML file to edit at 'key'.")
    push_to_new_branch: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> GitOpsDeployer:
        targets = [t for t in (self.kustomization, self.helm_values, self.file) if t]
        if len(targets) != 1:
            raise ValueError("give exactly one of 'kustomization', 'helm_values' or 'file'")
        if (self.helm_values or self.file) and not self.key:
            raise ValueError("'key' is required with 'helm_values' and 'file'")
        return self


DEPLOYERS: dict[str, type[Strict]] = {
    "command": CommandDeployer,
    "registry-tag": RegistryTagDeployer,
    "registry": RegistryDeployer,
    "kubernetes": KubernetesDeployer,
    "gitops": GitOpsDeployer,
}


class DeployStep(StepCommon):
    """Roll the run's digest out through a deployer."""

    type: Literal["deploy"]
    deployer: str = Field(description="One of: " + ", ".join(DEPLOYERS))
    address: Literal["public", "internal"] = Field(
        "public", description="Pull through the registry's public or internal (VPC) address."
    )
    dry_run: bool = False
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    @field_validator("deployer")
    @classmethod
    def _known_deployer(cls, value: str) -> str:
        if value not in DEPLOYERS:
            raise ValueError(unknown_name("deployer", value, DEPLOYERS))
        return value


STEP_TYPES: dict[str, type[StepCommon]] = {
    "approval": ApprovalStep,
    "build": BuildStep,
    "command": CommandStep,
    "deploy": DeployStep,
    "scan": ScanStep,
    "verify": VerifyStep,
}


def unknown_name(kind: str, value: str, known: Any) -> str:  # noqa: ANN401 - any iterable of names
    """'unknown step type 'deplyo' (did you mean 'deploy'?); valid: ...'."""
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{value}'{hint}; valid: {', '.join(names)}"


def _step_tag(value: Any) -> str | None:  # noqa: ANN401 - raw YAML
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"{STEP_TAG}{kind}" if isinstance(kind, str) else None


Step = Annotated[
    Annotated[ApprovalStep, Tag(STEP_TAG + "approval")]
    | Annotated[BuildStep, Tag(STEP_TAG + "build")]
    | Annotated[CommandStep, Tag(STEP_TAG + "command")]
    | Annotated[DeployStep, Tag(STEP_TAG + "deploy")]
    | Annotated[ScanStep, Tag(STEP_TAG + "scan")]
    | Annotated[VerifyStep, Tag(STEP_TAG + "verify")],
    Discriminator(_step_tag),
]
