"""The deployer's rules and patch, and the stand-in's objects, against recorded Kubernetes shapes.

The recorded objects (tests/fixtures/kubernetes/) follow kubectl and the API reference; checking
the stand-in against them keeps the STAND-IN from drifting into shapes no API server sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.config import steps
from conveyor.deployers import kubernetes
from tests.standins.kubernetes import STRATEGIC, KubernetesStandIn, serve

FIXTURES = Path(__file__).parents[2] / "fixtures" / "kubernetes"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


class TestRolloutRules:
    def test_complete_deployment_is_done(self) -> None:
        """A Deployment kubectl reports as rolled out is done."""
        state = kubernetes.rollout_state(
            "Deployment", fixture("k8s-deployment-status-complete.json")
        )
        assert state == ("done", "3 of 3 replicas updated, ready and available")

    def test_progress_deadline_is_a_failure(self) -> None:
        """A Deployment with ProgressDeadlineExceeded has failed, with the controller's message."""
        state = kubernetes.rollout_state(
            "Deployment", fixture("k8s-deployment-status-progress-deadline.json")
        )
        assert state == (
            "failed",
            'exceeded its progress deadline: ReplicaSet "myapp-7d4b9c6f8a" has timed out progressing.',
        )

    def test_unobserved_generation_waits(self) -> None:
        """A spec change the controller has not observed yet is waited for."""
        obj = fixture("k8s-deployment-status-complete.json")
        obj["metadata"]["generation"] = 8
        assert kubernetes.rollout_state("Deployment", obj) == (
            "waiting",
            "waiting for the spec update to be observed",
        )


def test_patch_is_kubectl_set_image() -> None:
    """The patch's spec is exactly what kubectl set image sends, plus the change-cause."""
    recorded = fixture("k8s-set-image-strategic-merge-patch.json")
    image = recorded["spec"]["template"]["spec"]["containers"][0]["image"]
    settings = steps.KubernetesDeployer(namespace="production", name="myapp")
    deployer = kubernetes.KubernetesDeployer(settings, config_dir=Path())
    patch = deployer._patch({"myapp": image}, cause="conveyor run 1", previous={"myapp": "old"})
    annotations = {
        kubernetes.CHANGE_CAUSE: "conveyor run 1",
        kubernetes.PREVIOUS: '{"myapp": "old"}',
    }
    assert patch == {**recorded, "metadata": {"annotations": annotations}}


@pytest.fixture
def standin() -> Iterator[KubernetesStandIn]:
    with serve(KubernetesStandIn()) as running:
        yield running


def _shape(value: Any) -> Any:
    """Keys and JSON types, without values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return type(value).__name__


class TestStandInShapes:
    def test_rolled_out_status_has_the_recorded_shape(self, standin: KubernetesStandIn) -> None:
        """The stand-in's rolled-out Deployment status has the recorded keys, types and reasons."""
        recorded = fixture("k8s-deployment-status-complete.json")
        standin.add(recorded)
        status = standin.workload("deployments", "production", "myapp")["status"]
        expected = {k: v for k, v in recorded["status"].items() if k != "conditions"}
        conditions = [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]
        assert {k: v for k, v in status.items() if k != "conditions"} == {
            **expected,
            "observedGeneration": 1,
        }
        assert conditions == [
            (c["type"], c["status"], c["reason"]) for c in recorded["status"]["conditions"]
        ]

    def test_unpullable_digest_reaches_the_recorded_deadline_state(
        self, standin: KubernetesStandIn
    ) -> None:
        """A new digest that cannot be pulled ends as the recorded ProgressDeadlineExceeded status."""
        complete = fixture("k8s-deployment-status-complete.json")
        failed = fixture("k8s-deployment-status-progress-deadline.json")
        standin.add(complete)
        new_image = failed["spec"]["template"]["spec"]["containers"][0]["image"]
        url = f"{standin.url}/apis/apps/v1/namespaces/production/deployments/myapp"
        change = {
            "spec": {"template": {"spec": {"containers": [{"name": "myapp", "image": new_image}]}}}
        }
        with httpx.Client() as client:
            client.patch(url, json=change, headers={"Content-Type": STRATEGIC}).raise_for_status()
            # 600s progressDeadlineSeconds after the first new pod: six GETs of 200s each.
            for _ in range(6):
                client.get(url).raise_for_status()
        key = ("deployments", "production", "myapp")
        obj = standin.workload(*key)
        status = obj["status"]
        numbers = (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
        assert {n: status[n] for n in numbers} == {n: failed["status"][n] for n in numbers}
        assert status["conditions"][1]["reason"] == "ProgressDeadlineExceeded"
        assert status["conditions"][1]["status"] == "False"
        assert obj["metadata"]["generation"] == 2
        assert _shape(status["conditions"]) == _shape(
            [
                {k: v for k, v in c.items() if not k.startswith("last")}
                for c in failed["status"]["conditions"]
            ]
        )
