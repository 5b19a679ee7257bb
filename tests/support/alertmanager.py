"""A real Alertmanager on 127.0.0.1 for tests: config checked by amtool, started on a free port, always killed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

ALERTMANAGER = Path(os.environ.get("ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager"))
AMTOOL = Path(os.environ.get("AMTOOL_BIN", "/usr/bin/amtool"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Alertmanager:
    url: str
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def post_alerts(self, alerts: list[dict]) -> None:
        """POST /api/v2/alerts, as Prometheus does; raises on anything but 200."""
        req = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            if resp.status != 200:
                raise RuntimeError(f"alertmanager answered {resp.status}: {resp.read()!r}")

    def alerts(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return list(json.load(resp))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _require(binary: Path) -> None:
    # Tests that need a real Alertmanager fail when it is missing; they never skip.
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RuntimeError(f"{binary} not found: install Debian's prometheus-alertmanager package")


@contextmanager
def alertmanager(
    workdir: Path,
    *,
    webhook_url: str,
    token: str,
    group_by: tuple[str, ...] = ("alertname",),
    group_wait: str = "100ms",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    send_resolved: bool = True,
    ready_timeout: float = 15.0,
) -> Iterator[Alertmanager]:
    """Run Alertmanager with one webhook receiver that sends `Authorization: Bearer <token>`."""
    config = {
        "route": {"receiver": "scaler", "group_by": list(group_by), "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": [{"name": "scaler", "webhook_configs": [{
            "url": webhook_url,
            "send_resolved": send_resolved,
            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
        }]}],
    }
    with running_alertmanager(workdir, config, ready_timeout=ready_timeout) as am:
        yield am


@contextmanager
def running_alertmanager(workdir: Path, config: dict, *, ready_timeout: float = 15.0) -> Iterator[Alertmanager]:
    """Run Alertmanager with any config (a route tree and receivers), checked by amtool first."""
    _require(ALERTMANAGER)
    _require(AMTOOL)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "am.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run([str(AMTOOL), "check-config", str(config_path)], capture_output=True, text=True,
                           timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"amtool check-config failed:\n{check.stdout}{check.stderr}")

    port = free_port()
    log_path = workdir / "alertmanager.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={config_path}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}",
             # Empty: no gossip listener (it would bind *:9094 TCP and UDP otherwise).
             "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )
    am = Alertmanager(f"http://127.0.0.1:{port}", config_path, log_path, proc)
    try:
        _wait_ready(am, ready_timeout)
        yield am
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(am: Alertmanager, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if am.proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {am.proc.returncode}:\n{am.log()}")
        try:
            with urllib.request.urlopen(f"{am.url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"alertmanager not ready after {timeout} s:\n{am.log()}")
