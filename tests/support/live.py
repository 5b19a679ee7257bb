"""Live parts for the control loop's end-to-end tests: an exporter whose load the test sets, a real Prometheus
scraping it every second that can be killed and started again on the same port and data, and a chat-webhook
receiver that records what it was sent."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.support.prometheus import PROMETHEUS, _require, free_port


class Exporter:
    """`app_cpu_percent{service=...}` and `app_errors_ratio{service=...}` on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cpu = Gauge("app_cpu_percent", "CPU per replica, percent", ["service"], registry=self.registry)
        self.errors = Gauge("app_errors_ratio", "Failed request ratio", ["service"], registry=self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def set(self, service: str, cpu: float, errors: float = 0.0) -> None:
        self.cpu.labels(service=service).set(cpu)
        self.errors.labels(service=service).set(errors)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class LivePrometheus:
    """Prometheus scraping `targets` every second; `kill()` and `start()` keep the port and the data."""

    workdir: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LivePrometheus:
        _require(PROMETHEUS)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": self.targets}]}]}
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - the process owns it until killed
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=3650d"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as r:
            return json.load(r)["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query returns something (the first scrape lands ~5.5 s after start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self.query(promql)
                if got:
                    return got
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{promql} returned nothing within {timeout} s")


class ChatReceiver:
    """Records the JSON bodies posted to it, like a Slack incoming webhook would receive them."""

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each post
        received, requests = self.posts, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                requests.append((self.path, dict(self.headers.items())))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def texts(self) -> list[str]:
        return [p["text"] for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(check, timeout: float = 30.0, every: float = 0.2, what: str = "condition"):
    """Poll `check()` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"{what} not reached within {timeout} s (last: {last!r})")
