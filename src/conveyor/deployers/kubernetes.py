"""Kubernetes image upgrade: set one digest on a workload and wait like `kubectl rollout status`.

The deployer talks to the real Kubernetes API through lightkube, configured from a kubeconfig
(path and context) or in-cluster service-account files. It:

1. reads the workload (Deployment, StatefulSet, DaemonSet or CronJob) and picks the target
   containers: the one named, or every container whose image is from the same repository;
2. does nothing but wait when those containers already run exactly this reference (idempotent);
3. otherwise sends the strategic-merge patch `kubectl set image` sends (containers merge by
   name, FORMATS.md §6), adding the run id in `kubernetes.io/change-cause`;
4. polls until the rollout is complete by kubectl's rules (`rollout_status.go`), fails on
   `ProgressDeadlineExceeded` or at the step timeout, and optionally sets the previous images back
   and waits for that;
5. where pods can be listed, checks that their `imageID` carries the digest.

lightkube and httpx2 errors are translated here: 401/403/404/409/422 become StepFailed (the
business said no); transport errors and 5xx become DeployError, which the engine retries.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.core_v1 import Pod

from conveyor.config import steps
from conveyor.core.errors import DeployError, InvalidImageRef, StepFailed
from conveyor.core.images import ImageRef, PinnedImage

Json = dict[str, Any]
Workload = type[Deployment] | type[StatefulSet] | type[DaemonSet] | type[CronJob]
State = Literal["done", "waiting", "failed"]

RESOURCES: Mapping[str, Workload] = {
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
    "CronJob": CronJob,
}
CHANGE_CAUSE = "kubernetes.io/change-cause"
# The images before Conveyor's patch, as JSON {container: image}, so that a retried step (the
# engine retries after a lost connection) can still roll back to them.
PREVIOUS = "conveyor.dev/previous-images"
# kubectl rollout status polls through a watch; two seconds between GETs is as gentle as that.
POLL_SECONDS = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """What one deploy of one digest needs from the run: the reference, the clock, the log."""

    image: PinnedImage
    reference: str
    run_id: int
    timeout: float | None
    dry_run: bool
    log: Callable[[str], None]
    now: Callable[[], datetime]
    sleep: Callable[[float], Awaitable[None]]


class KubernetesDeployer:
    """Sets a workload's container images to one digest reference and waits for the rollout."""

    kind = "kubernetes"

    def __init__(self, settings: steps.KubernetesDeployer, *, config_dir: Path) -> None:
        self.settings = settings
        self.config_dir = config_dir
        self.resource = RESOURCES[settings.kind]
        self.where = f"{settings.kind} {settings.namespace}/{settings.name}"

    async def deploy(self, rollout: Rollout) -> dict[str, str]:
        """Patch (unless already there) and wait; raises StepFailed naming workload and cause."""
        async with self._client() as client:
            try:
                return await self._deploy(client, rollout)
            except ApiError as exc:
                raise self._api_failure(exc, "patch" if not rollout.dry_run else "get") from exc
            except httpx2.HTTPError as exc:
                server = client.config.cluster.server
                raise DeployError(
                    f"{self.where}: cannot reach the Kubernetes API at {server}: {exc}"
                ) from exc
            except ValueError as exc:  # lightkube's decoder (msgspec) refusing a response
                raise DeployError(
                    f"{self.where}: the Kubernetes API sent an object Conveyor cannot read: {exc}"
                ) from exc

    async def _deploy(self, client: AsyncClient, rollout: Rollout) -> dict[str, str]:
        workload = await self._fetch(client)
        containers = self._targets(workload, rollout.image)
        refused = untrackable(self.settings.kind, workload)
        if refused:
            raise StepFailed(f"{self.where} {refused}")
        previous = {c["name"]: c["image"] for c in containers}
        output = {
            "image": rollout.reference,
            "workload": self.where,
            "containers": ",".join(previous),
        }
        if all(image == rollout.reference for image in previous.values()):
            rollout.log(f"{self.where}: {', '.join(previous)} already at {rollout.reference}")
            if rollout.dry_run:
                return {**output, "dry_run": "true", "changed": "false"}
            # A retried step finds its own patch here; the images before it are in PREVIOUS.
            await self._follow(client, rollout, recorded_previous(workload, previous))
            await self._check_pods(client, workload, list(previous), rollout)
            return {**output, "changed": "false"}
        patch = self._patch(
            {name: rollout.reference for name in previous},
            cause=f"conveyor run {rollout.run_id}: set image to {rollout.reference}",
            previous=previous,
        )
        if rollout.dry_run:
            rollout.log(
                f"dry run: would PATCH {self.where} "
                f"(application/strategic-merge-patch+json): {json.dumps(patch, sort_keys=True)}"
            )
            return {**output, "dry_run": "true", "changed": "false"}
        await client.patch(self.resource, self.settings.name, patch)
        for name, image in previous.items():
            rollout.log(f"{self.where}: container {name}: {image} -> {rollout.reference}")
        await self._follow(client, rollout, previous)
        await self._check_pods(client, workload, list(previous), rollout)
        return {**output, "changed": "true"}

    async def _follow(
        self, client: AsyncClient, rollout: Rollout, previous: Mapping[str, str] | None
    ) -> None:
        """Wait for the rollout; on failure roll back to `previous` when asked and known."""
        try:
            await self._wait(client, rollout, rolling_back=False)
        except StepFailed as failure:
            if not self.settings.rollback_on_failure:
                raise
            if not previous:
                raise StepFailed(f"{failure}; no previous image recorded to roll back to") from None
            raise await self._roll_back(client, rollout, previous, failure) from failure

    async def _fetch(self, client: AsyncClient) -> Json:
        obj = await client.get(self.resource, self.settings.name, namespace=self.settings.namespace)
        workload: Json = obj.to_dict()
        return workload

    def _targets(self, workload: Json, image: PinnedImage) -> list[Json]:
        containers: list[Json] = pod_spec(workload).get("containers", [])
        wanted = self.settings.container
        if wanted is not None:
            named = [c for c in containers if c.get("name") == wanted]
            if not named:
                names = ", ".join(c.get("name", "?") for c in containers)
                raise StepFailed(
                    f"{self.where} has no container '{wanted}' (containers: {names}); "
                    "set with.container to one of them"
                )
            return named
        same = [c for c in containers if is_same_repository(c.get("image", ""), image)]
        if not same:
            images = ", ".join(f"{c.get('name')}={c.get('image')}" for c in containers)
            raise StepFailed(
                f"{self.where} has no container with an image from {image.repository} "
                f"({images}); set with.container to name the one to change"
            )
        return same

    def _patch(
        self, images: Mapping[str, str], *, cause: str, previous: Mapping[str, str] | None
    ) -> Json:
        containers = [{"name": name, "image": image} for name, image in images.items()]
        template: Json = {"spec": {"containers": containers}}
        if self.settings.kind == "CronJob":
            spec: Json = {"jobTemplate": {"spec": {"template": template}}}
        else:
            spec = {"template": template}
        # null removes the annotation (strategic merge), so a rollback leaves none behind.
        recorded = json.dumps(dict(previous), sort_keys=True) if previous else None
        annotations = {CHANGE_CAUSE: cause, PREVIOUS: recorded}
        return {"metadata": {"annotations": annotations}, "spec": spec}

    async def _wait(self, client: AsyncClient, rollout: Rollout, *, rolling_back: bool) -> None:
        started = rollout.now()
        what = "rollback" if rolling_back else "rollout"
        while True:
            state, detail = rollout_state(self.settings.kind, await self._fetch(client))
            if state == "done":
                rollout.log(f"{self.where}: {what} complete: {detail}")
                return
            if state == "failed":
                raise StepFailed(f"{self.where}: {what} failed: {detail}")
            elapsed = (rollout.now() - started).total_seconds()
            if rollout.timeout is not None and elapsed >= rollout.timeout:
                raise StepFailed(
                    f"{self.where}: {what} did not complete within the step timeout of "
                    f"{rollout.timeout:g}s ({detail})"
                )
            rollout.log(f"{self.where}: {detail}")
            await rollout.sleep(POLL_SECONDS)

    async def _roll_back(
        self,
        client: AsyncClient,
        rollout: Rollout,
        previous: Mapping[str, str],
        failure: StepFailed,
    ) -> StepFailed:
        images = ", ".join(f"{name}={image}" for name, image in previous.items())
        rollout.log(f"{self.where}: rolling back to {images}")
        cause = f"conveyor run {rollout.run_id}: roll back after failed rollout"
        patch = self._patch(previous, cause=cause, previous=None)
        await client.patch(self.resource, self.settings.name, patch)
        try:
            await self._wait(client, rollout, rolling_back=True)
        except StepFailed as again:
            return StepFailed(f"{failure}; rolling back to {images} also failed: {again}")
        return StepFailed(f"{failure}; rolled back to {images}")

    async def _check_pods(
        self, client: AsyncClient, workload: Json, containers: list[str], rollout: Rollout
    ) -> None:
        if not self.settings.check_pods or self.settings.kind == "CronJob":
            return
        labels: Json = workload["spec"].get("selector", {}).get("matchLabels", {})
        try:
            pods = [
                pod.to_dict()
                async for pod in client.list(Pod, namespace=self.settings.namespace, labels=labels)
            ]
        except ApiError as exc:
            if exc.status.code != 403:
                raise
            rollout.log(f"{self.where}: not checking pods' imageID: listing pods is forbidden")
            return
        found = [
            (pod["metadata"]["name"], name, image_id)
            for pod in pods
            for name, image_id in running(pod, containers, rollout.reference)
        ]
        wrong = [
            f"pod {pod} container {name}: {image_id}"
            for pod, name, image_id in found
            if "@" in image_id and not image_id.endswith(f"@{rollout.image.digest}")
        ]
        if wrong:
            raise StepFailed(
                f"{self.where}: pods do not run {rollout.image.digest}: {'; '.join(wrong)}"
            )
        checked = sum(1 for _, _, image_id in found if "@" in image_id)
        # Some runtimes report the image's config id ("sha256:...") rather than a repository
        # digest; that cannot be compared with a manifest digest, so it is not checked.
        unknown = len(found) - checked
        note = f", {unknown} without a repository digest" if unknown else ""
        rollout.log(
            f"{self.where}: pods checked: {checked} container(s) in {len(pods)} pod(s) "
            f"report imageID {rollout.image.digest}{note}"
        )

    def _client(self) -> AsyncClient:
        try:
            if self.settings.kubeconfig:
                path = (self.config_dir / Path(self.settings.kubeconfig).expanduser()).resolve()
                config = KubeConfig.from_file(path)
            else:
                config = KubeConfig.from_env()
            single = config.get(self.settings.context)
        except (ConfigError, KeyError, OSError) as exc:
            source = self.settings.kubeconfig or "in-cluster config or ~/.kube/config"
            raise StepFailed(f"kubeconfig {source}: {exc}") from exc
        return AsyncClient(
            config=single,
            namespace=self.settings.namespace,
            field_manager="conveyor",
            trust_env=True,  # honour HTTPS_PROXY / NO_PROXY as kubectl does
        )

    def _api_failure(self, exc: ApiError, verb: str) -> StepFailed | DeployError:
        code = exc.status.code or exc.response.status_code
        message = exc.status.message or exc.response.reason_phrase
        if code == 404:
            return StepFailed(f"{self.where} not found: {message}")
        if code in (401, 403):
            plural = self.resource._api_info.plural
            return StepFailed(
                f"{self.where}: forbidden by the cluster ({code}): {message}; the kubeconfig's "
                f"user needs get and {verb} on {plural} in namespace {self.settings.namespace}"
            )
        if code is not None and code >= 500:
            return DeployError(f"{self.where}: the Kubernetes API failed ({code}): {message}")
        return StepFailed(
            f"{self.where}: the Kubernetes API refused the request ({code}): {message}"
        )


def recorded_previous(workload: Json, current: Mapping[str, str]) -> dict[str, str] | None:
    """The images before Conveyor's last patch, from its annotation, for these containers."""
    text = workload.get("metadata", {}).get("annotations", {}).get(PREVIOUS)
    try:
        recorded = json.loads(text) if text else {}
    except ValueError:
        return None
    if not isinstance(recorded, dict) or set(recorded) != set(current):
        return None
    return {str(name): str(image) for name, image in recorded.items()}


def running(pod: Json, containers: list[str], reference: str) -> list[tuple[str, str]]:
    """(container, imageID) of the pod's target containers whose spec has this reference."""
    specs = {c.get("name"): c.get("image") for c in pod.get("spec", {}).get("containers", [])}
    return [
        (status["name"], str(status.get("imageID") or ""))
        for status in pod.get("status", {}).get("containerStatuses", [])
        if status.get("name") in containers and specs.get(status.get("name")) == reference
    ]


def pod_spec(workload: Json) -> Json:
    """The pod template's spec of a workload (a CronJob's is one level deeper)."""
    spec: Json = workload.get("spec", {})
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"].get("spec", {})
    template: Json = spec.get("template", {}).get("spec", {})
    return template


def is_same_repository(text: str, image: PinnedImage) -> bool:
    """Whether a container's image is from the image's repository (any address, tag or digest)."""
    try:
        ref = ImageRef.parse(text)
    except InvalidImageRef:
        return False
    return ref.repository.name == image.repository.name


def untrackable(kind: str, workload: Json) -> str | None:
    """Why a rollout of this workload could not be followed to the end, if it could not."""
    spec: Json = workload.get("spec", {})
    if kind == "Deployment" and spec.get("paused"):
        return "is paused, so a new image would not roll out; resume it with kubectl rollout resume"
    strategy = spec.get("updateStrategy", {}).get("type", "RollingUpdate")
    if kind in ("StatefulSet", "DaemonSet") and strategy != "RollingUpdate":
        return (
            f"uses updateStrategy {strategy}: pods are not replaced when the image changes, "
            "so the rollout cannot be followed; use RollingUpdate"
        )
    return None


def rollout_state(kind: str, workload: Json) -> tuple[State, str]:
    """kubectl's `rollout status` verdict for one read of a workload (rollout_status.go)."""
    generation = workload.get("metadata", {}).get("generation", 0)
    status: Json = workload.get("status") or {}
    if kind == "CronJob":
        return "done", "a CronJob has no rollout; its next Job uses the new template"
    if generation > status.get("observedGeneration", 0):
        return "waiting", "waiting for the spec update to be observed"
    if kind == "Deployment":
        return deployment_state(workload["spec"], status)
    if kind == "StatefulSet":
        return statefulset_state(workload["spec"], status)
    return daemonset_state(status)


def deployment_state(spec: Json, status: Json) -> tuple[State, str]:
    """Deployment rules: deadline, then updated, old replicas, ready and available counts."""
    for condition in status.get("conditions", []):
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"exceeded its progress deadline: {condition.get('message', '')}"
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < desired:
        return "waiting", f"{updated} of {desired} replicas updated"
    if status.get("replicas", 0) > updated:
        old = status.get("replicas", 0) - updated
        return "waiting", f"{old} old replicas pending termination"
    for field in ("readyReplicas", "availableReplicas"):
        if status.get(field, 0) < updated:
            return "waiting", f"{status.get(field, 0)} of {updated} updated replicas {field[:-8]}"
    return "done", f"{updated} of {desired} replicas updated, ready and available"


def statefulset_state(spec: Json, status: Json) -> tuple[State, str]:
    """StatefulSet rules: ready count, partition, then current revision equals update revision."""
    strategy = spec.get("updateStrategy", {})
    desired = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    if ready < desired:
        return "waiting", f"{ready} of {desired} pods ready"
    partition = strategy.get("rollingUpdate", {}).get("partition", 0)
    updated = status.get("updatedReplicas", 0)
    if partition and updated < desired - partition:
        return "waiting", f"{updated} of {desired - partition} partitioned pods updated"
    if status.get("updateRevision") != status.get("currentRevision"):
        return "waiting", f"{updated} of {desired} pods at the update revision"
    return "done", f"{desired} pods at revision {status.get('currentRevision')}"


def daemonset_state(status: Json) -> tuple[State, str]:
    """DaemonSet rules: updated, then available, against the desired number scheduled."""
    desired = status.get("desiredNumberScheduled", 0)
    updated = status.get("updatedNumberScheduled", 0)
    if updated < desired:
        return "waiting", f"{updated} of {desired} updated pods scheduled"
    available = status.get("numberAvailable", 0)
    if available < desired:
        return "waiting", f"{available} of {desired} updated pods available"
    return "done", f"{desired} of {desired} updated pods available"
