"""A fake Kubernetes API server on 127.0.0.1 for tests: apps/v1 workloads and their /scale, Deployments' ReplicaSets
and revisions as the Deployment controller keeps them, faults, a kubeconfig."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
ROUTE = re.compile(
    r"^/apis/apps/v1/namespaces/(?P<namespace>[^/]+)/(?P<plural>deployments|statefulsets)/(?P<name>[^/]+)"
    r"(?P<scale>/scale)?$"
)
# What kubectl scale and the python client send; a JSON Patch (a list of operations) is not served here.
PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}
CREATED = "2024-01-01T00:00:00Z"
RS_ROUTE = re.compile(r"^/apis/apps/v1/namespaces/(?P<namespace>[^/]+)/replicasets(?:/(?P<name>[^/]+))?$")
# A Deployment's own object also takes a JSON Patch (RFC 6902), as `kubectl rollout undo` sends one.
JSON_PATCH = "application/json-patch+json"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Deployment annotations the controller does not copy onto its ReplicaSets.
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, "deployment.kubernetes.io/revision-history",
              "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
              "deprecated.deployment.rollback.to"}


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON body, or None


@dataclass
class Workload:
    """A Deployment or StatefulSet: `ready` stays where the test puts it, as if pods were slow to start."""

    replicas: int
    ready: int
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    generation: int = 1
    resource_version: int = 1
    # Deployments only: the pod template (set by `add`), annotations, and how a rollout of a new template goes.
    template: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    settle_polls: int = 0  # GETs of the Deployment that show a new rollout still in progress
    rollout_left: int = 0  # of those, still to come for the current rollout (set it to 0 to let it finish)
    stuck: bool = False  # the current rollout has exceeded its progress deadline


@dataclass
class ReplicaSet:
    """One revision of a Deployment: its template (with the hash label) and revision number."""

    name: str
    owner: str  # the Deployment's name
    template: dict[str, Any]
    revision: int
    created: str
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class _Fault:
    status: int | None  # answer with this status and a Status body; None: answer as usual
    drop: bool  # close the connection without answering
    delay: float  # seconds to stall first
    left: int  # requests still to spoil


def path_of(resource: str, name: str, *, namespace: str = "default", scale: bool = False) -> str:
    """The URL path of a workload ("deployment" or "statefulset"), or of its /scale subresource."""
    return f"/apis/apps/v1/namespaces/{namespace}/{resource}s/{name}" + ("/scale" if scale else "")


def replicasets_path(namespace: str = "default") -> str:
    """The URL path ReplicaSets are listed at."""
    return f"/apis/apps/v1/namespaces/{namespace}/replicasets"


def pod_template(name: str, image: str = "registry.k8s.io/pause:3.9") -> dict[str, Any]:
    """The pod template a Deployment made by `add` starts with."""
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": image}]},
    }


def without_hash(template: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(template)
    out.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return out


def write_kubeconfig(path: Path, *, server: str, token: str) -> Path:
    """A kubeconfig with one cluster at `server` (plain HTTP) and one user with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": "default"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def status_body(code: int, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Kubernetes Status object, as the API server sends with every error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown"),
        "details": details or {},
        "code": code,
    }


class FakeKube:
    """The server's state: workloads by (namespace, plural, name), every request seen, and pending faults."""

    def __init__(self, *, token: str) -> None:
        self.token = token
        self.url = ""
        self.kubeconfig = Path()
        self.requests: list[Request] = []
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.replicasets: dict[tuple[str, str], ReplicaSet] = {}  # (namespace, name) -> ReplicaSet
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._faults: dict[str, list[_Fault]] = {}

    def add(self, resource: str, name: str, *, namespace: str = "default", replicas: int = 1,
            ready: int | None = None, image: str | None = None) -> Workload:
        """Create a workload ("deployment" or "statefulset"); `ready` defaults to `replicas`. A Deployment
        starts at revision 1, one ReplicaSet with the template of `pod_template(name, image)`."""
        workload = Workload(replicas=replicas, ready=replicas if ready is None else ready)
        with self.lock:
            self.workloads[(namespace, f"{resource}s", name)] = workload
            if resource == "deployment":
                first = pod_template(name, image) if image else pod_template(name)
                self._rollout(namespace, name, workload, first)
                workload.generation, workload.resource_version, workload.rollout_left = 1, 1, 0
        return workload

    def deploy(self, name: str, *, image: str, namespace: str = "default") -> ReplicaSet:
        """A new version of a Deployment, as `kubectl set image` makes one: its first container gets `image`."""
        with self.lock:
            workload = self.workloads[(namespace, "deployments", name)]
            assert workload.template is not None
            template = copy.deepcopy(workload.template)
            template["spec"]["containers"][0]["image"] = image
            return self._rollout(namespace, name, workload, template)

    def owned(self, name: str, *, namespace: str = "default") -> list[ReplicaSet]:
        """A Deployment's ReplicaSets, oldest first."""
        with self.lock:
            return [rs for (ns, _), rs in self.replicasets.items() if ns == namespace and rs.owner == name]

    def _rollout(self, namespace: str, name: str, w: Workload, template: dict[str, Any]) -> ReplicaSet:
        """What the Deployment controller does with a new template (the lock is held): the ReplicaSet that
        already has it (an undo) or a new one becomes current and takes the next revision number."""
        owned = [rs for (ns, _), rs in self.replicasets.items() if ns == namespace and rs.owner == name]
        top = max((rs.revision for rs in owned), default=0)
        plain = without_hash(template)
        found = next((rs for rs in owned if without_hash(rs.template) == plain), None)
        if found is None:
            digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]
            labeled = copy.deepcopy(plain)
            labeled.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
            n = len(self.replicasets)
            found = ReplicaSet(name=f"{name}-{digest}", owner=name, template=labeled, revision=top + 1,
                               created=f"2024-01-01T{n // 60:02d}:{n % 60:02d}:00Z")
            self.replicasets[(namespace, found.name)] = found
        elif found.revision != top:
            found.revision = top + 1
        found.annotations = {k: v for k, v in w.annotations.items() if k not in NOT_COPIED}
        found.annotations[REVISION] = str(found.revision)
        w.template = plain
        w.annotations[REVISION] = str(found.revision)
        w.generation += 1
        w.resource_version += 1
        w.rollout_left = w.settle_polls
        return found

    def fail(self, path: str, status: int, *, times: int = 1) -> None:
        """Answer the next `times` requests for `path` (any method) with `status` and a Status body."""
        self._add_fault(path, _Fault(status, False, 0.0, times))

    def drop(self, path: str, *, times: int = 1) -> None:
        """Close the connection without an answer for the next `times` requests for `path`."""
        self._add_fault(path, _Fault(None, True, 0.0, times))

    def stall(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Wait `seconds` before answering the next `times` requests for `path` normally."""
        self._add_fault(path, _Fault(None, False, seconds, times))

    def requests_to(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def _add_fault(self, path: str, fault: _Fault) -> None:
        with self.lock:
            self._faults.setdefault(path, []).append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            queue = self._faults.get(path, [])
            if not queue:
                return None
            fault = queue[0]
            fault.left -= 1
            if fault.left <= 0:
                queue.pop(0)
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API server; every answer has a Content-Length
    timeout = 10  # seconds an idle kept-alive connection may hold its thread
    disable_nagle_algorithm = True  # headers and body go out as two writes; without this each answer waits 40 ms
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass  # one line per request on stderr is noise in test output

    def do_GET(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        kube = self.server.kube
        path, _, query = self.path.partition("?")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        with kube.lock:
            kube.requests.append(Request(self.command, path, query, headers, body))

        fault = kube._take_fault(path)
        if fault is not None:
            if fault.delay:
                kube.stopping.wait(fault.delay)
            if fault.drop:
                self.close_connection = True  # the client sees the connection closed with no answer
                return
            if fault.status is not None:
                self._send_status(fault.status, f"injected {fault.status}")
                return

        if headers.get("authorization") != f"Bearer {kube.token}":
            self._send_status(401, "Unauthorized")
            return
        listing = RS_ROUTE.match(path)
        if listing is not None:
            self._replicasets(listing["namespace"], listing["name"], query)
            return
        route = ROUTE.match(path)
        if route is None:
            self._send_status(404, "the server could not find the requested resource")
            return
        template_patch = self.command == "PATCH" and not route["scale"]  # a Deployment's own object only
        if self.command not in ("GET", "PATCH") or (template_patch and route["plural"] != "deployments"):
            self._send_status(405, f"{self.command} is not served by this fake")
            return
        namespace, plural, name = route["namespace"], route["plural"], route["name"]
        with kube.lock:
            workload = kube.workloads.get((namespace, plural, name))
            if workload is None:
                self._send_status(404, f'{plural}.apps "{name}" not found',
                                  {"name": name, "group": "apps", "kind": plural})
                return
            if template_patch:
                problem = self._patch_object(namespace, name, workload, headers.get("content-type", ""), body)
                if problem is not None:
                    self._send_status(*problem)
                    return
            elif self.command == "PATCH":
                problem = self._patch(workload, headers.get("content-type", ""), body)
                if problem is not None:
                    self._send_status(*problem)
                    return
            answer = _scale(namespace, plural, name, workload) if route["scale"] else _object(
                namespace, plural, name, workload)
            if self.command == "GET" and not route["scale"] and workload.rollout_left > 0:
                workload.rollout_left -= 1  # the rollout moves on with each look, as pods would start
        self._send_json(200, answer)

    def _patch(self, workload: Workload, content_type: str, body: Any) -> tuple[int, str] | None:
        if content_type.split(";")[0].strip() not in PATCH_TYPES:
            return 415, f"the body of the request was in an unknown format: {content_type}"
        replicas = (body or {}).get("spec", {}).get("replicas") if isinstance(body, dict) else None
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            return 422, f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative integer"
        if replicas != workload.replicas:
            workload.replicas = replicas
            workload.generation += 1
        workload.resource_version += 1
        return None

    def _replicasets(self, namespace: str, name: str | None, query: str) -> None:
        kube = self.server.kube
        if self.command != "GET":
            self._send_status(405, f"{self.command} is not served by this fake")
            return
        wanted = {}
        for term in (urllib.parse.parse_qs(query).get("labelSelector") or [""])[0].split(","):
            if "=" in term:
                key, _, value = term.partition("=")
                wanted[key.strip()] = value.strip()
        with kube.lock:
            found = []
            for (ns, _), rs in kube.replicasets.items():
                owner = kube.workloads.get((ns, "deployments", rs.owner))
                if ns != namespace or owner is None:
                    continue
                labels = rs.template.get("metadata", {}).get("labels", {})
                if all(labels.get(k) == v for k, v in wanted.items()) and name in (None, rs.name):
                    found.append(_replicaset(namespace, rs, owner))
        if name is not None:
            if not found:
                self._send_status(404, f'replicasets.apps "{name}" not found', {"name": name, "group": "apps"})
            else:
                self._send_json(200, found[0])
            return
        self._send_json(200, {"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "1"},
                              "items": found})

    def _patch_object(self, namespace: str, name: str, workload: Workload, content_type: str,
                      body: Any) -> tuple[int, str] | None:
        """A Deployment's template, annotations, replicas or paused, by JSON Patch or merge patch."""
        kind = content_type.split(";")[0].strip()
        now = _object(namespace, "deployments", name, workload)
        if kind == JSON_PATCH:
            if not isinstance(body, list):
                return 422, "a JSON Patch is a list of operations"
            try:
                after = _json_patch(now, body)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                return 422, f"the JSON Patch does not apply: {e}"
        elif kind in PATCH_TYPES and isinstance(body, dict):
            after = _merge(now, body)
        else:
            return 415, f"the body of the request was in an unknown format: {content_type}"
        template, spec = after["spec"].get("template"), after["spec"]
        replicas = spec.get("replicas")
        if not isinstance(template, dict) or isinstance(replicas, bool) or not isinstance(replicas, int):
            return 422, "spec.template and spec.replicas must stay an object and a number"
        workload.annotations = {str(k): str(v) for k, v in (after["metadata"].get("annotations") or {}).items()}
        workload.paused = bool(spec.get("paused"))
        if replicas != workload.replicas:
            workload.replicas = replicas
            workload.generation += 1
        if without_hash(template) != workload.template:
            self.server.kube._rollout(namespace, name, workload, template)
        else:
            # The revision is the controller's to set; a patch cannot move it away from the current one.
            workload.annotations[REVISION] = now["metadata"]["annotations"][REVISION]
        workload.resource_version += 1
        return None

    def _send_status(self, code: int, message: str, details: dict[str, Any] | None = None) -> None:
        headers = {"Retry-After": "1"} if code == 429 else {}
        self._send_json(code, status_body(code, message, details), headers)

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a stalled answer after its timeout)


def _metadata(namespace: str, name: str, w: Workload) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "uid": w.uid, "resourceVersion": str(w.resource_version),
            "creationTimestamp": CREATED}


def _scale(namespace: str, plural: str, name: str, w: Workload) -> dict[str, Any]:
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": _metadata(namespace, name, w),
        "spec": {"replicas": w.replicas},
        "status": {"replicas": w.replicas, "selector": f"app={name}"},
    }


def _object(namespace: str, plural: str, name: str, w: Workload) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": w.replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": copy.deepcopy(w.template) if w.template is not None else pod_template(name),
    }
    if plural == "statefulsets":
        spec["serviceName"] = name
    status: dict[str, Any] = {"observedGeneration": w.generation, "replicas": w.replicas}
    if w.ready:
        # The API server leaves zero counts out of the JSON altogether.
        status["readyReplicas"] = w.ready
        status["availableReplicas"] = w.ready
    metadata: dict[str, Any] = {**_metadata(namespace, name, w), "generation": w.generation}
    if plural == "deployments":
        if w.paused:
            spec["paused"] = True
        metadata["annotations"] = dict(w.annotations)
        rolling = w.rollout_left > 0 or w.stuck
        if not rolling:
            status["updatedReplicas"] = w.replicas
        progressing = (
            {"status": "False", "reason": "ProgressDeadlineExceeded",
             "message": f'ReplicaSet has timed out progressing (deployment "{name}")'} if w.stuck
            else {"status": "True", "reason": "ReplicaSetUpdated"} if rolling
            else {"status": "True", "reason": "NewReplicaSetAvailable"}
        )
        status["conditions"] = [{"type": "Progressing", **progressing}]
    return {
        "kind": KINDS[plural],
        "apiVersion": "apps/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def _replicaset(namespace: str, rs: ReplicaSet, owner: Workload) -> dict[str, Any]:
    current = owner.template is not None and without_hash(rs.template) == owner.template
    labels = dict(rs.template.get("metadata", {}).get("labels", {}))
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": rs.name, "namespace": namespace, "uid": rs.uid, "resourceVersion": "1",
            "creationTimestamp": rs.created, "labels": labels, "annotations": dict(rs.annotations),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": rs.owner, "uid": owner.uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "replicas": owner.replicas if current else 0,
            "selector": {"matchLabels": {"app": rs.owner, HASH_LABEL: labels.get(HASH_LABEL, "")}},
            "template": copy.deepcopy(rs.template),
        },
        "status": {"replicas": owner.replicas if current else 0},
    }


def _pointer(path: str) -> list[str]:
    """'/metadata/annotations/a~1b' -> ['metadata', 'annotations', 'a/b'] (RFC 6901)."""
    if not path.startswith("/"):
        raise ValueError(f"bad path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add, replace, remove and test over objects (what a rollout undo sends)."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = out
        for part in parents:
            node = node[part]
        kind = op["op"]
        if kind == "test":
            if node[last] != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif kind == "remove":
            del node[last]
        elif kind == "replace":
            node[last]  # noqa: B018 (replace needs the member to exist)
            node[last] = copy.deepcopy(op["value"])
        elif kind == "add":
            node[last] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"op {kind!r} is not served by this fake")
    return out


def _merge(doc: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (null removes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    kube: FakeKube


@contextmanager
def fake_kube(workdir: Path, *, token: str = "fake-kube-token") -> Iterator[FakeKube]:
    """Serve a FakeKube on a free 127.0.0.1 port, with `workdir/kubeconfig` pointing at it; always stopped."""
    kube = FakeKube(token=token)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.kube = kube
    host, port = server.server_address[:2]
    kube.url = f"http://{host}:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    kube.kubeconfig = write_kubeconfig(workdir / "kubeconfig", server=kube.url, token=token)
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default, at every test's end.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-kube", daemon=True)
    thread.start()
    try:
        yield kube
    finally:
        kube.stopping.set()  # wakes stalled answers
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
