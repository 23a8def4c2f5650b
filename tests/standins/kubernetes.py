"""A STAND-IN for the Kubernetes API server, on 127.0.0.1, for the Kubernetes deployer's tests.

No API server can run on these machines (SPEC.md), so this small ASGI app plays one. It is not a
mock of our code: the real client (lightkube) reaches it over HTTP through a real kubeconfig file.

What it follows (kubernetes.io API reference for apps/v1 and batch/v1, the "Deployments" concept
page, `kubectl rollout status` in kubectl's `rollout_status.go`, and FORMATS.md §6):

- `GET` and `PATCH` of `apps/v1` deployments, statefulsets and daemonsets and `batch/v1`
  cronjobs at `/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`;
- `PATCH` with `application/strategic-merge-patch+json` only: maps merge, `null` deletes a key,
  lists named `containers` merge by `name` (the patch strategy the API declares for them), other
  lists are replaced;
- `metadata.generation` increases when `spec` changes (not on annotation-only patches), and
  `metadata.resourceVersion` on every change;
- the controller's status advances over time: `status.observedGeneration` catches up, then
  updated, ready and available replicas (StatefulSet: ready replicas and current revision;
  DaemonSet: updated and available numbers scheduled) reach the desired count;
- a DaemonSet runs on two nodes;
- a template whose image digest is not in `pullable` never becomes ready; for a Deployment the
  `Progressing` condition turns `False` with reason `ProgressDeadlineExceeded` once
  `spec.progressDeadlineSeconds` (default 600) have passed since its last progress;
- `GET /api/v1/namespaces/<ns>/pods?labelSelector=k=v,...` lists the ready pods of the workloads
  whose template labels match, with `status.containerStatuses[].imageID`;
- errors are `Status` objects: 404 `NotFound` for a missing workload, 403 `Forbidden` for every
  request in a namespace listed in `forbidden_namespaces`, for PATCHes in
  `read_only_namespaces` and for pod lists in `pods_forbidden_namespaces` (the message has the
  API server's wording), 415 for other patch types.

What it leaves out: authentication (any bearer token is accepted), watches, list/create/delete of
workloads, ReplicaSets and revision history (`rollout undo`), JSON patch, merge patch and
server-side apply, `$patch` directives, field managers, resourceVersion preconditions, paused
Deployments, scheduling, real pods, and the conditions' `lastUpdateTime` and
`lastTransitionTime`. Its clock is not the wall clock: each GET of a workload
advances that workload's time by `seconds_per_get` (default 200s), so tests are fast and
deterministic.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Json = dict[str, Any]
GROUPS = {
    "deployments": ("apps/v1", "Deployment"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "daemonsets": ("apps/v1", "DaemonSet"),
    "cronjobs": ("batch/v1", "CronJob"),
}
STRATEGIC = "application/strategic-merge-patch+json"
# The stand-in's controller takes one step (observe, then one more pod updated, then ready) per
# this many seconds of its clock.
STEP_SECONDS = 200


@dataclass
class Patch:
    """One PATCH the stand-in received."""

    path: str
    content_type: str
    body: Json


@dataclass
class Clock:
    """A workload's rollout clock: seconds of controller time since its template last changed."""

    seconds: float = 0.0


@dataclass
class KubernetesStandIn:
    """The stand-in's state: workloads, which digests can be pulled, RBAC refusals, PATCH log."""

    pullable: set[str] = field(default_factory=set)
    forbidden_namespaces: set[str] = field(default_factory=set)
    pods_forbidden_namespaces: set[str] = field(default_factory=set)
    read_only_namespaces: set[str] = field(default_factory=set)
    seconds_per_get: float = 200.0
    # image -> imageID the pods report instead of the image's own digest (a runtime that ran
    # something else); empty in the honest case.
    reported_image_ids: dict[str, str] = field(default_factory=dict)
    patches: list[Patch] = field(default_factory=list)
    # Authorization headers seen (credentials are accepted, not checked).
    authorizations: set[str] = field(default_factory=set)
    workloads: dict[tuple[str, str, str], Json] = field(default_factory=dict)
    clocks: dict[tuple[str, str, str], Clock] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add(self, manifest: Json, *, rolled_out: bool = True) -> None:
        """Create a workload; by default its current template is fully rolled out."""
        obj = copy.deepcopy(manifest)
        plural = next(p for p, (_, kind) in GROUPS.items() if kind == obj["kind"])
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.update(generation=1, resourceVersion="1", uid=f"uid-{meta['name']}")
        key = (plural, meta["namespace"], meta["name"])
        with self.lock:
            if rolled_out:  # its pods run, so its images could be pulled
                self.pullable.update(_digest(c["image"]) for c in _containers(obj))
            self.workloads[key] = obj
            self.clocks[key] = Clock(seconds=1e9 if rolled_out else 0.0)
            _advance(obj, self.clocks[key], self.pullable)

    def workload(self, plural: str, namespace: str, name: str) -> Json:
        """The stored object as it is now (no clock tick)."""
        with self.lock:
            return copy.deepcopy(self.workloads[(plural, namespace, name)])

    def app(self) -> Starlette:
        base = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"
        return Starlette(
            routes=[
                Route(base, self._workload_route, methods=["GET", "PATCH"]),
                Route("/api/v1/namespaces/{namespace}/pods", self._pods, methods=["GET"]),
            ]
        )

    async def _workload_route(self, request: Request) -> JSONResponse:
        params = request.path_params
        plural, namespace, name = params["plural"], params["namespace"], params["name"]
        group_version = f"{params['group']}/{params['version']}"
        verb = request.method.lower()
        self.authorizations.add(request.headers.get("authorization", ""))
        if GROUPS.get(plural, ("", ""))[0] != group_version:
            return status(
                404, "NotFound", f"the server could not find the requested resource ({plural})"
            )
        if namespace in self.forbidden_namespaces or (
            verb == "patch" and namespace in self.read_only_namespaces
        ):
            return forbidden(verb, plural, name, namespace)
        key = (plural, namespace, name)
        body = await request.json() if verb == "patch" else None
        with self.lock:
            obj = self.workloads.get(key)
            if obj is None:
                group = params["group"]
                return status(404, "NotFound", f'{plural}.{group} "{name}" not found', name=name)
            clock = self.clocks[key]
            if verb == "get":
                clock.seconds += self.seconds_per_get
                _advance(obj, clock, self.pullable)
                return JSONResponse(copy.deepcopy(obj))
            content_type = request.headers.get("content-type", "").split(";")[0]
            self.patches.append(Patch(request.url.path, content_type, body or {}))
            if content_type != STRATEGIC:
                return status(415, "UnsupportedMediaType", f"the stand-in accepts {STRATEGIC} only")
            self._apply(obj, clock, body or {})
            return JSONResponse(copy.deepcopy(obj))

    def _apply(self, obj: Json, clock: Clock, body: Json) -> None:
        before = copy.deepcopy(obj.get("spec"))
        merged = strategic_merge(obj, body)
        obj.clear()
        obj.update(merged)
        meta = obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        if obj.get("spec") != before:
            meta["generation"] += 1
            clock.seconds = 0.0

    async def _pods(self, request: Request) -> JSONResponse:
        namespace = request.path_params["namespace"]
        if namespace in self.forbidden_namespaces | self.pods_forbidden_namespaces:
            return forbidden("list", "pods", "", namespace)
        selector = dict(
            term.split("=", 1)
            for term in request.query_params.get("labelSelector", "").split(",")
            if term
        )
        with self.lock:
            items = [
                pod
                for (plural, ns, _), obj in self.workloads.items()
                if ns == namespace and plural != "cronjobs"
                for pod in _pods_of(obj, self.reported_image_ids)
                if selector.items() <= pod["metadata"]["labels"].items()
            ]
        return JSONResponse(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }
        )


def strategic_merge(target: Any, patch: Any, key: str = "") -> Any:
    """Strategic merge for what the tests send: maps merge, containers merge by name."""
    if isinstance(patch, dict) and isinstance(target, dict):
        merged = dict(target)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = strategic_merge(target.get(name), value, name)
        return merged
    if key == "containers" and isinstance(patch, list) and isinstance(target, list):
        merged_list = [dict(c) for c in target]
        for item in patch:
            match = next((c for c in merged_list if c.get("name") == item.get("name")), None)
            if match is None:
                merged_list.append(item)
            else:
                match.update(strategic_merge(match, item))
        return merged_list
    return copy.deepcopy(patch)


def _containers(obj: Json) -> list[Json]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    containers: list[Json] = spec["template"]["spec"]["containers"]
    return containers


def _digest(image: str) -> str:
    return image.partition("@")[2]


def _is_pullable(obj: Json, pullable: set[str]) -> bool:
    return all(_digest(c["image"]) in pullable for c in _containers(obj) if "@" in c["image"])


def _advance(obj: Json, clock: Clock, pullable: set[str]) -> None:
    """Move the controller's status to where `clock.seconds` puts it (one step per STEP_SECONDS)."""
    kind = obj["kind"]
    if kind == "CronJob":
        return
    status_ = obj.setdefault("status", {})
    if clock.seconds <= 0:
        return
    status_["observedGeneration"] = obj["metadata"]["generation"]
    steps = (
        int(clock.seconds // STEP_SECONDS) - 1
    )  # the first tick only observes the new generation
    ok = _is_pullable(obj, pullable)
    desired = obj["spec"].get("replicas", 1) if kind != "DaemonSet" else 2
    updated = min(desired, max(steps, 0)) if ok else min(desired, 1)
    ready = min(desired, max(steps - 1, 0)) if ok else 0
    if kind == "Deployment":
        _deployment_status(
            obj, status_, clock, pullable, desired=desired, updated=updated, ready=ready
        )
    elif kind == "StatefulSet":
        revision = f"{obj['metadata']['name']}-{obj['metadata']['generation']}"
        status_.update(replicas=desired, readyReplicas=ready, updatedReplicas=updated)
        status_["updateRevision"] = revision
        if ready == desired:
            status_["currentRevision"] = revision
    else:
        status_.update(
            desiredNumberScheduled=desired,
            currentNumberScheduled=desired,
            numberMisscheduled=0,
            updatedNumberScheduled=updated,
            numberReady=ready,
            numberAvailable=ready,
        )


def _deployment_status(
    obj: Json,
    status_: Json,
    clock: Clock,
    pullable: set[str],
    *,
    desired: int,
    updated: int,
    ready: int,
) -> None:
    # Old pods keep serving (ready and available) until new ones are ready to replace them.
    old = desired - ready
    status_.update(
        replicas=updated + old,
        updatedReplicas=updated,
        readyReplicas=ready + old,
        availableReplicas=ready + old,
    )
    # The API omits zero counts; unavailableReplicas is the surge pod that is not ready yet.
    status_.pop("unavailableReplicas", None)
    if updated + old > ready + old:
        status_["unavailableReplicas"] = updated - ready
    name = f"{obj['metadata']['name']}-{obj['metadata']['generation']}"
    deadline = obj["spec"].get("progressDeadlineSeconds", 600)
    if ready == desired:
        reason = "NewReplicaSetAvailable"
        progressing = ("True", reason, f'ReplicaSet "{name}" has successfully progressed.')
    elif not _is_pullable(obj, pullable) and clock.seconds - 2 * STEP_SECONDS > deadline:
        # The controller counts the deadline from the last progress: a pullable template
        # progresses every step, an unpullable one stops after creating its first new pod.
        reason = "ProgressDeadlineExceeded"
        progressing = ("False", reason, f'ReplicaSet "{name}" has timed out progressing.')
    else:
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
    status_["conditions"] = [
        {
            "type": "Available",
            "status": "True",
            "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.",
        },
        {
            "type": "Progressing",
            "status": progressing[0],
            "reason": progressing[1],
            "message": progressing[2],
        },
    ]


def _pods_of(obj: Json, reported: dict[str, str]) -> list[Json]:
    """The ready pods of the current template, each container with the imageID it would report."""
    status_ = obj.get("status", {})
    ready = status_.get("readyReplicas", status_.get("numberReady", 0))
    if status_.get("observedGeneration") != obj["metadata"]["generation"]:
        return []
    template = obj["spec"]["template"]
    labels = template.get("metadata", {}).get("labels", {})
    statuses = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": reported.get(c["image"]) or _image_id(c["image"]),
            "ready": True,
            "restartCount": 0,
        }
        for c in template["spec"]["containers"]
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{obj['metadata']['name']}-{i}", "labels": labels},
            "spec": {"containers": copy.deepcopy(template["spec"]["containers"])},
            "status": {"phase": "Running", "containerStatuses": statuses},
        }
        for i in range(ready)
    ]


def _image_id(image: str) -> str:
    """What containerd reports: repository@digest (a tag-only image gets a digest of its name)."""
    name, _, digest = image.partition("@")
    head, _, last = name.rpartition("/")
    if ":" in last:
        name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    if not digest:
        digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    return f"{name}@{digest}"


def status(code: int, reason: str, message: str, *, name: str = "") -> JSONResponse:
    """A `meta/v1 Status` failure body, as the API server sends with every error."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name} if name else {},
        "code": code,
    }
    return JSONResponse(body, status_code=code)


def forbidden(verb: str, plural: str, name: str, namespace: str) -> JSONResponse:
    group = GROUPS.get(plural, ("v1", ""))[0].rpartition("/")[0]
    resource = f'{plural}.{group} "{name}"' if name else plural
    where = f'in API group "{group}" ' if group else 'in API group "" '
    message = (
        f'{resource} is forbidden: User "conveyor" cannot {verb} resource "{plural}" '
        f'{where}in the namespace "{namespace}"'
    )
    return status(403, "Forbidden", message, name=name)


@contextmanager
def serve(standin: KubernetesStandIn) -> Iterator[KubernetesStandIn]:
    """Serve the stand-in on 127.0.0.1 in a thread; stops it on exit."""
    sock = socket.socket()
    # Accepted connections inherit this; without it, Nagle's algorithm and delayed ACKs add
    # 40ms to every response uvicorn writes in two parts.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(standin.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the Kubernetes stand-in did not start within 5s")
    standin.url = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def write_kubeconfig(path: Any, url: str, *, namespace: str = "default") -> None:
    """A real kubeconfig with one context, 'standin', pointing at the stand-in."""
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "current-context: standin\n"
        "clusters:\n"
        f"- name: standin\n  cluster:\n    server: {url}\n"
        "users:\n"
        "- name: conveyor\n  user:\n    token: stand-in-token\n"
        "contexts:\n"
        f"- name: standin\n  context:\n    cluster: standin\n    user: conveyor\n"
        f"    namespace: {namespace}\n"
    )
