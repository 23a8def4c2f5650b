"""The Kubernetes deployer, through the deploy step, against the Kubernetes API STAND-IN.

No API server can run on these machines, so tests/standins/kubernetes.py plays one on
127.0.0.1; the real lightkube client reaches it through a real kubeconfig file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conveyor import wiring
from conveyor.config import loader, models, steps
from conveyor.core.errors import DeployError, StepFailed
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.core.runs import Succeeded
from conveyor.engine.context import StepContext
from conveyor.engine.steps.table import RUNNERS
from conveyor.engine.worker import Worker
from conveyor.service import queries, runs
from conveyor.service.context import Services
from conveyor.testing import InMemoryRegistry
from tests.standins.kubernetes import STRATEGIC, KubernetesStandIn, serve, write_kubeconfig

NEW = Digest.of(b"new manifest")
OLD = Digest.of(b"old manifest")
IMAGE = PinnedImage(
    repository=Repository("registry.example.com", "myteam/myapp"), digest=NEW, tag="myapp-V1.4.2"
)
NEW_REF = f"registry.example.com/myteam/myapp@{NEW}"
OLD_REF = f"registry.example.com/myteam/myapp@{OLD}"
SIDECAR = "registry.example.com/myteam/proxy@" + str(Digest.of(b"proxy"))
START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def workload(kind: str = "Deployment", *, name: str = "myapp", **spec: Any) -> dict[str, Any]:
    """A workload in namespace 'production' running OLD_REF next to a sidecar."""
    pod = {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [
                {"name": "myapp", "image": OLD_REF, "imagePullPolicy": "IfNotPresent"},
                {"name": "proxy", "image": SIDECAR},
            ]
        },
    }
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": pod}
    if kind == "CronJob":
        body = {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": pod}}}
    elif kind != "DaemonSet":
        body["replicas"] = 3
    group = "batch/v1" if kind == "CronJob" else "apps/v1"
    return {
        "apiVersion": group,
        "kind": kind,
        "metadata": {"name": name, "namespace": "production"},
        "spec": {**body, **spec},
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubernetesStandIn]:
    standin = KubernetesStandIn(pullable={str(NEW), str(OLD)})
    with serve(standin):
        write_kubeconfig(tmp_path / "kubeconfig", standin.url)
        yield standin


class FakeClock:
    """The run's clock: sleeping moves it forward without waiting."""

    def __init__(self) -> None:
        self.now = START
        self.slept = 0.0

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.slept += seconds
        await asyncio.sleep(0)


class Registries:
    def definition(self, name: str) -> Any:
        return models.Registry(
            url="https://registry.example.com", internal_url="https://registry.internal:5000"
        )

    def client(self, name: str) -> Any:
        raise AssertionError("the Kubernetes deployer needs no registry client")

    def credentials(self, name: str) -> None:
        return None


def deploy_step(tmp_path: Path, **settings: Any) -> tuple[StepContext, list[str]]:
    """A deploy step for run 7 with the given step fields and `with:` settings."""
    step_fields = {k: settings.pop(k) for k in ("address", "dry_run", "timeout") if k in settings}
    config = steps.DeployStep.model_validate(
        {
            "type": "deploy",
            "deployer": "kubernetes",
            **step_fields,
            "with": {
                "kubeconfig": "kubeconfig",
                "namespace": "production",
                "name": "myapp",
                **settings,
            },
        }
    )
    lines: list[str] = []
    clock = FakeClock()
    context = StepContext(
        run_id=7,
        pipeline="production",
        environment="production",
        step_index=0,
        step_name="deploy",
        config=config,
        image=IMAGE,
        source_registry="main",
        parameters={},
        author="ann",
        log=lambda line, stream="stdout": lines.append(line),
        workdir=tmp_path,
        registries=Registries(),
        now=lambda: clock.now,
        sleep=clock.sleep,
        config_dir=tmp_path,
    )
    return context, lines


def run(context: StepContext) -> Any:
    return asyncio.run(RUNNERS["deploy"].run(context))


def images(standin: KubernetesStandIn, plural: str = "deployments") -> dict[str, str]:
    obj = standin.workload(plural, "production", "myapp")
    spec = obj["spec"]["jobTemplate"]["spec"] if plural == "cronjobs" else obj["spec"]
    return {c["name"]: c["image"] for c in spec["template"]["spec"]["containers"]}


class TestRollout:
    def test_success_patches_the_container_and_waits(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """The named container gets the digest by a strategic-merge patch, and the step waits for the rollout."""
        cluster.add(workload())
        context, lines = deploy_step(tmp_path, container="myapp")
        outcome = run(context)
        assert outcome == Succeeded(
            output={
                "deployer": "kubernetes",
                "image": NEW_REF,
                "workload": "Deployment production/myapp",
                "containers": "myapp",
                "changed": "true",
            }
        )
        assert images(cluster) == {"myapp": NEW_REF, "proxy": SIDECAR}
        [patch] = cluster.patches
        assert patch.content_type == STRATEGIC
        assert patch.path == "/apis/apps/v1/namespaces/production/deployments/myapp"
        assert patch.body["spec"] == {
            "template": {"spec": {"containers": [{"name": "myapp", "image": NEW_REF}]}}
        }
        status = cluster.workload("deployments", "production", "myapp")["status"]
        assert (status["updatedReplicas"], status["availableReplicas"]) == (3, 3)
        assert (
            "Deployment production/myapp: rollout complete: 3 of 3 replicas updated, ready and available"
            in lines
        )
        assert (
            f"Deployment production/myapp: pods checked: 3 container(s) in 3 pod(s) report imageID {NEW}"
            in lines
        )

    def test_change_cause_names_the_run(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """The run id is recorded in the kubernetes.io/change-cause annotation."""
        cluster.add(workload())
        run(deploy_step(tmp_path)[0])
        annotations = cluster.workload("deployments", "production", "myapp")["metadata"][
            "annotations"
        ]
        assert (
            annotations["kubernetes.io/change-cause"] == f"conveyor run 7: set image to {NEW_REF}"
        )

    def test_every_container_of_the_repository_by_default(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """Without a container name, containers from the image's repository change and others do not."""
        manifest = workload()
        manifest["spec"]["template"]["spec"]["containers"].append(
            {"name": "worker", "image": "registry.example.com/myteam/myapp:old"}
        )
        cluster.add(manifest)
        outcome = run(deploy_step(tmp_path)[0])
        assert outcome.output["containers"] == "myapp,worker"
        assert images(cluster) == {"myapp": NEW_REF, "proxy": SIDECAR, "worker": NEW_REF}

    def test_internal_address_is_written_as_given(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """With address: internal, the image is pulled through the registry's internal address."""
        cluster.add(workload())
        run(deploy_step(tmp_path, address="internal")[0])
        assert images(cluster)["myapp"] == f"registry.internal:5000/myteam/myapp@{NEW}"

    @pytest.mark.parametrize(
        ("kind", "plural", "done"),
        [
            pytest.param(
                "StatefulSet", "statefulsets", "3 pods at revision myapp-2", id="statefulset"
            ),
            pytest.param(
                "DaemonSet", "daemonsets", "2 of 2 updated pods available", id="daemonset"
            ),
            pytest.param("CronJob", "cronjobs", "a CronJob has no rollout", id="cronjob"),
        ],
    )
    def test_other_workload_kinds(
        self, cluster: KubernetesStandIn, tmp_path: Path, kind: str, plural: str, done: str
    ) -> None:
        """StatefulSets, DaemonSets and CronJobs are patched at their pod template and waited for."""
        cluster.add(workload(kind))
        context, lines = deploy_step(tmp_path, kind=kind, container="myapp")
        assert run(context).output["changed"] == "true"
        assert images(cluster, plural) == {"myapp": NEW_REF, "proxy": SIDECAR}
        assert any(done in line for line in lines), lines


class TestIdempotence:
    def test_rerun_sends_no_patch(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """The same digest already rolled out succeeds again without a PATCH."""
        cluster.add(workload())
        run(deploy_step(tmp_path)[0])
        context, lines = deploy_step(tmp_path)
        outcome = run(context)
        assert len(cluster.patches) == 1
        assert outcome.output["changed"] == "false"
        assert f"Deployment production/myapp: myapp already at {NEW_REF}" in lines

    def test_dry_run_prints_the_patch_and_sends_none(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """A dry run logs the exact patch and changes nothing."""
        cluster.add(workload())
        context, lines = deploy_step(tmp_path, dry_run=True, container="myapp")
        outcome = run(context)
        assert cluster.patches == []
        assert images(cluster)["myapp"] == OLD_REF
        assert outcome.output["dry_run"] == "true"
        [line] = [line for line in lines if line.startswith("dry run:")]
        prefix = "dry run: would PATCH Deployment production/myapp (application/strategic-merge-patch+json): "
        assert line.startswith(prefix)
        patch = json.loads(line.removeprefix(prefix))
        assert patch["spec"]["template"]["spec"]["containers"] == [
            {"name": "myapp", "image": NEW_REF}
        ]

    def test_dry_run_when_already_there(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A dry run of a digest already rolled out says so and sends nothing."""
        cluster.add(workload())
        run(deploy_step(tmp_path)[0])
        context, lines = deploy_step(tmp_path, dry_run=True)
        assert run(context).output["changed"] == "false"
        assert len(cluster.patches) == 1
        assert lines[-1] == f"Deployment production/myapp: myapp already at {NEW_REF}"


class TestFailures:
    def test_deadline_exceeded_fails(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A digest that cannot be pulled ends in ProgressDeadlineExceeded, and the step fails saying so."""
        cluster.pullable.discard(str(NEW))
        cluster.add(workload())
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path)[0])
        assert str(failure.value) == (
            "Deployment production/myapp: rollout failed: exceeded its progress deadline: "
            'ReplicaSet "myapp-2" has timed out progressing.'
        )
        assert images(cluster)["myapp"] == NEW_REF
        assert len(cluster.patches) == 1

    def test_deadline_exceeded_rolls_back(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """With rollback_on_failure, the previous image is set back and waited for."""
        cluster.pullable.discard(str(NEW))
        cluster.add(workload())
        context, lines = deploy_step(tmp_path, rollback_on_failure=True)
        with pytest.raises(
            StepFailed, match=r"exceeded its progress deadline.*; rolled back to myapp="
        ) as failure:
            run(context)
        assert str(failure.value).endswith(f"; rolled back to myapp={OLD_REF}")
        assert images(cluster)["myapp"] == OLD_REF
        assert len(cluster.patches) == 2
        assert cluster.patches[1].body["spec"]["template"]["spec"]["containers"] == [
            {"name": "myapp", "image": OLD_REF}
        ]
        assert (
            "Deployment production/myapp: rollback complete: 3 of 3 replicas updated, ready and available"
            in lines
        )
        status = cluster.workload("deployments", "production", "myapp")["status"]
        assert status["conditions"][1]["reason"] == "NewReplicaSetAvailable"

    @pytest.mark.parametrize(
        ("annotations", "ending"),
        [
            pytest.param(
                {"conveyor.dev/previous-images": json.dumps({"myapp": OLD_REF})},
                f"; rolled back to myapp={OLD_REF}",
                id="previous-recorded",
            ),
            pytest.param({}, "; no previous image recorded to roll back to", id="nothing-recorded"),
        ],
    )
    def test_retried_step_rolls_back_to_the_recorded_images(
        self, cluster: KubernetesStandIn, tmp_path: Path, annotations: dict[str, str], ending: str
    ) -> None:
        """A step retried after its own patch rolls back to the images its patch recorded."""
        cluster.pullable.discard(str(NEW))
        manifest = workload()
        manifest["metadata"]["annotations"] = annotations
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = NEW_REF
        cluster.pullable.add(SIDECAR.partition("@")[2])
        cluster.add(manifest, rolled_out=False)
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path, rollback_on_failure=True)[0])
        assert str(failure.value).startswith(
            "Deployment production/myapp: rollout failed: exceeded its progress deadline"
        )
        assert str(failure.value).endswith(ending)
        rolled_back = bool(annotations)
        assert images(cluster)["myapp"] == (OLD_REF if rolled_back else NEW_REF)
        assert len(cluster.patches) == int(rolled_back)
        metadata = cluster.workload("deployments", "production", "myapp")["metadata"]
        assert "conveyor.dev/previous-images" not in metadata.get("annotations", {})

    def test_step_timeout(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A rollout still progressing at the step timeout fails the step, naming the timeout and the state."""
        cluster.pullable.discard(str(NEW))
        cluster.add(workload(progressDeadlineSeconds=10**9))
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path, timeout="10s")[0])
        assert str(failure.value) == (
            "Deployment production/myapp: rollout did not complete within the step timeout "
            "of 10s (1 of 3 replicas updated)"
        )

    def test_wrong_container_name(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A container name the workload does not have fails before any change, listing the names."""
        cluster.add(workload())
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path, container="app")[0])
        assert str(failure.value) == (
            "Deployment production/myapp has no container 'app' (containers: myapp, proxy); "
            "set with.container to one of them"
        )
        assert cluster.patches == []

    def test_no_container_of_the_repository(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """Without a container name, a workload with no container of the repository fails."""
        manifest = workload()
        manifest["spec"]["template"]["spec"]["containers"] = [{"name": "proxy", "image": SIDECAR}]
        cluster.add(manifest)
        with pytest.raises(
            StepFailed,
            match=r"has no container with an image from registry\.example\.com/myteam/myapp",
        ):
            run(deploy_step(tmp_path)[0])
        assert cluster.patches == []

    def test_rbac_forbidden(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A 403 from the API fails the step with the server's reason and the permission needed."""
        cluster.add(workload())
        cluster.forbidden_namespaces.add("production")
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path)[0])
        assert str(failure.value) == (
            "Deployment production/myapp: forbidden by the cluster (403): "
            'deployments.apps "myapp" is forbidden: User "conveyor" cannot get resource '
            '"deployments" in API group "apps" in the namespace "production"; the kubeconfig\'s '
            "user needs get and patch on deployments in namespace production"
        )

    def test_patch_forbidden(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A user who may read but not patch the workload gets the server's refusal, and nothing changes."""
        cluster.add(workload())
        cluster.read_only_namespaces.add("production")
        with pytest.raises(StepFailed, match='cannot patch resource "deployments"'):
            run(deploy_step(tmp_path)[0])
        assert images(cluster)["myapp"] == OLD_REF

    @pytest.mark.parametrize(
        ("kind", "spec", "reason"),
        [
            pytest.param(
                "Deployment",
                {"paused": True},
                "is paused, so a new image would not roll out; resume it with kubectl rollout resume",
                id="paused-deployment",
            ),
            pytest.param(
                "StatefulSet",
                {"updateStrategy": {"type": "OnDelete"}},
                "uses updateStrategy OnDelete: pods are not replaced when the image changes, "
                "so the rollout cannot be followed; use RollingUpdate",
                id="ondelete-statefulset",
            ),
        ],
    )
    def test_untrackable_rollout_is_refused_before_patching(
        self,
        cluster: KubernetesStandIn,
        tmp_path: Path,
        kind: str,
        spec: dict[str, Any],
        reason: str,
    ) -> None:
        """A workload whose rollout could not be followed is refused before any change."""
        cluster.add(workload(kind, **spec))
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path, kind=kind)[0])
        assert str(failure.value) == f"{kind} production/myapp {reason}"
        assert cluster.patches == []

    def test_kubeconfig_token_is_never_printed(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """The kubeconfig's token appears in no log line and no failure message."""
        cluster.add(workload())
        cluster.read_only_namespaces.add("production")
        context, lines = deploy_step(tmp_path)
        with pytest.raises(StepFailed) as failure:
            run(context)
        cluster.read_only_namespaces.clear()
        context, more = deploy_step(tmp_path, dry_run=True)
        run(context)
        assert cluster.authorizations == {"Bearer stand-in-token"}
        assert "stand-in-token" not in str(failure.value)
        assert not [line for line in lines + more if "stand-in-token" in line]

    def test_missing_workload(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A workload that does not exist fails the step, naming kind, namespace and name."""
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path)[0])
        assert str(failure.value) == (
            'Deployment production/myapp not found: deployments.apps "myapp" not found'
        )

    def test_unreachable_api_is_retryable(self, tmp_path: Path) -> None:
        """A connection failure is a retryable DeployError, not a library exception."""
        write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
        with pytest.raises(
            DeployError, match=r"cannot reach the Kubernetes API at http://127\.0\.0\.1:9"
        ) as failure:
            run(deploy_step(tmp_path)[0])
        assert failure.value.retryable is True
        assert not isinstance(failure.value, httpx2.HTTPError)
        assert isinstance(failure.value.__cause__, httpx2.ConnectError)

    def test_unknown_context(self, cluster: KubernetesStandIn, tmp_path: Path) -> None:
        """A context the kubeconfig does not have fails the step, naming the file."""
        with pytest.raises(StepFailed, match=r"kubeconfig kubeconfig: Context 'prod' not found"):
            run(deploy_step(tmp_path, context="prod")[0])


class TestPods:
    def test_pods_running_another_digest_fail(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """Pods whose imageID does not carry the digest fail the step, naming the pods."""
        cluster.add(workload())
        other = f"registry.example.com/myteam/myapp@{Digest.of(b'other')}"
        cluster.reported_image_ids[NEW_REF] = other
        with pytest.raises(StepFailed) as failure:
            run(deploy_step(tmp_path, container="myapp")[0])
        assert str(failure.value) == (
            f"Deployment production/myapp: pods do not run {NEW}: "
            f"pod myapp-0 container myapp: {other}; pod myapp-1 container myapp: {other}; "
            f"pod myapp-2 container myapp: {other}"
        )

    def test_pod_listing_forbidden_is_skipped(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """Where pods cannot be listed, the imageID check is skipped with a log line."""
        cluster.add(workload())
        cluster.pods_forbidden_namespaces.add("production")
        context, lines = deploy_step(tmp_path)
        assert run(context).output["changed"] == "true"
        assert (
            "Deployment production/myapp: not checking pods' imageID: listing pods is forbidden"
            in lines
        )


WORKER_CONFIG = """\
registries:
  main: {url: "https://registry.test:5000", internal_url: "https://registry.internal:5000"}
environments:
  - name: test
sources:
  myapp: {registry: main, repository: team/myapp}
pipelines:
  deploy-test:
    environment: test
    source: {artifact: myapp}
    steps:
      - type: deploy
        deployer: kubernetes
        address: internal
        with: {kubeconfig: kube/test.yaml, namespace: production, name: myapp}
"""


class TestThroughTheWorker:
    def test_run_deploys_and_records_history(
        self, cluster: KubernetesStandIn, tmp_path: Path
    ) -> None:
        """A queued run deploys through the worker, and the environment records the digest."""
        registry = InMemoryRegistry(host="registry.test:5000")
        pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
        cluster.pullable.add(str(pushed.digest))
        cluster.seconds_per_get = 10_000  # the worker sleeps for real between polls
        manifest = workload()
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = (
            f"registry.test:5000/team/myapp@{OLD}"
        )
        cluster.add(manifest)
        (tmp_path / "kube").mkdir()
        write_kubeconfig(tmp_path / "kube" / "test.yaml", cluster.url)
        (tmp_path / "conveyor.yaml").write_text(WORKER_CONFIG)
        definitions = loader.load(tmp_path / "conveyor.yaml")
        services = Services(
            definitions=definitions,
            engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
            registries=wiring.ConfiguredRegistries(
                definitions.registries, {}, lambda definition, credentials: registry
            ),
            data_dir=tmp_path / "data",
        )
        run_id = runs.start_run(
            services, runs.RunRequest(pipeline="deploy-test", user="ann", digest=str(pushed.digest))
        )
        asyncio.run(Worker(services=services, name="w").run_until_idle())

        view = queries.show_run(services, run_id)
        assert view["status"] == "succeeded", view
        internal = f"registry.internal:5000/team/myapp@{pushed.digest}"
        assert images(cluster)["myapp"] == internal
        assert queries.show_environment(services, "test")["digest"] == str(pushed.digest)
        annotations = cluster.workload("deployments", "production", "myapp")["metadata"][
            "annotations"
        ]
        assert (
            annotations["kubernetes.io/change-cause"]
            == f"conveyor run {run_id}: set image to {internal}"
        )
