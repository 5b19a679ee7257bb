"""A fake Kubernetes API server on 127.0.0.1 for tests: apps/v1 workloads and their /scale, faults, a kubeconfig."""

from __future__ import annotations

import json
import re
import threading
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


@dataclass
class _Fault:
    status: int | None  # answer with this status and a Status body; None: answer as usual
    drop: bool  # close the connection without answering
    delay: float  # seconds to stall first
    left: int  # requests still to spoil


def path_of(resource: str, name: str, *, namespace: str = "default", scale: bool = False) -> str:
    """The URL path of a workload ("deployment" or "statefulset"), or of its /scale subresource."""
    return f"/apis/apps/v1/namespaces/{namespace}/{resource}s/{name}" + ("/scale" if scale else "")


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
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._faults: dict[str, list[_Fault]] = {}

    def add(self, resource: str, name: str, *, namespace: str = "default", replicas: int = 1,
            ready: int | None = None) -> Workload:
        """Create a workload ("deployment" or "statefulset"); `ready` defaults to `replicas`."""
        workload = Workload(replicas=replicas, ready=replicas if ready is None else ready)
        with self.lock:
            self.workloads[(namespace, f"{resource}s", name)] = workload
        return workload

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
        route = ROUTE.match(path)
        if route is None:
            self._send_status(404, "the server could not find the requested resource")
            return
        if self.command not in ("GET", "PATCH") or (self.command == "PATCH" and not route["scale"]):
            self._send_status(405, f"{self.command} is not served by this fake")
            return
        namespace, plural, name = route["namespace"], route["plural"], route["name"]
        with kube.lock:
            workload = kube.workloads.get((namespace, plural, name))
            if workload is None:
                self._send_status(404, f'{plural}.apps "{name}" not found',
                                  {"name": name, "group": "apps", "kind": plural})
                return
            if self.command == "PATCH":
                problem = self._patch(workload, headers.get("content-type", ""), body)
                if problem is not None:
                    self._send_status(*problem)
                    return
            answer = _scale(namespace, plural, name, workload) if route["scale"] else _object(
                namespace, plural, name, workload)
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
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": "registry.k8s.io/pause:3.9"}]},
        },
    }
    if plural == "statefulsets":
        spec["serviceName"] = name
    status: dict[str, Any] = {"observedGeneration": w.generation, "replicas": w.replicas}
    if w.ready:
        # The API server leaves zero counts out of the JSON altogether.
        status["readyReplicas"] = w.ready
        status["availableReplicas"] = w.ready
    return {
        "kind": KINDS[plural],
        "apiVersion": "apps/v1",
        "metadata": {**_metadata(namespace, name, w), "generation": w.generation},
        "spec": spec,
        "status": status,
    }


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
