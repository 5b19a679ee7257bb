"""A real Prometheus on 127.0.0.1 for tests: backfilled from OpenMetrics, on a free port, always killed."""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
PROMTOOL = Path(os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool"))

DEFAULT_CONFIG: dict[str, Any] = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"}}

# promtool accepts millisecond timestamps silently and files them ~56,000 years ahead; refuse them here
MAX_EPOCH_SECONDS = 1e11


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Series:
    """One series to backfill: `name` is the sample name (a counter's ends in `_total`)."""

    name: str
    labels: Mapping[str, str]
    times: Sequence[float]  # unix SECONDS, increasing (promtool drops out-of-order samples silently)
    values: Sequence[float]
    kind: str = "gauge"  # or "counter"


def openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`, `# EOF` included."""
    families: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for s in series:
        family = s.name.removesuffix("_total") if s.kind == "counter" else s.name
        if s.kind == "counter" and not s.name.endswith("_total"):
            raise ValueError(f"counter sample names end in _total: {s.name}")
        kinds[family] = s.kind
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
        head = f"{s.name}{{{labels}}}" if labels else s.name
        lines = families.setdefault(family, [])
        last = -math.inf
        for t, v in zip(s.times, s.values, strict=True):
            if t > MAX_EPOCH_SECONDS:
                raise ValueError(f"{s.name}: timestamp {t} is in milliseconds; OpenMetrics wants seconds")
            if t <= last:
                raise ValueError(f"{s.name}: timestamps must increase ({t} after {last})")
            last = t
            lines.append(f"{head} {_number(v)} {t:.3f}")
    out = []
    for family, lines in families.items():
        out.append(f"# TYPE {family} {kinds[family]}")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


@dataclass
class RunningPrometheus:
    url: str
    workdir: Path
    config_path: Path
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    # set when the server runs with a web config: TLS with a test CA, basic auth
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    def api(self, path: str, **params: str | float) -> Any:
        """GET /api/v1/<path> and return its `data`; raises on anything but status success."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with self.open(f"/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus answered {body}")
        return body["data"]

    def raw(self, path: str, **params: str | float) -> bytes:
        """The undecoded body of GET /api/v1/<path>, e.g. to save a query_range answer as a file."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with self.open(f"/api/v1/{path}?{query}", timeout=10) as resp:
            return resp.read()

    def open(self, path: str, *, timeout: float) -> Any:
        """urlopen(url + path) with this server's CA and credentials, if it has any."""
        request = urllib.request.Request(f"{self.url}{path}")
        if self.basic_auth is not None:
            pair = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {pair}")
        return urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _require(binary: Path) -> None:
    # Tests that need a real Prometheus fail when it is missing; they never skip.
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RuntimeError(f"{binary} not found: install Debian's prometheus package")


def backfill(text: str, data_dir: Path, workdir: Path) -> None:
    """Write TSDB blocks from OpenMetrics `text` into `data_dir`; must run before Prometheus starts there.

    Blocks added under a running Prometheus only show up at its next block reload (~1 min), so the helper
    below always backfills first.
    """
    _require(PROMTOOL)
    if not text.rstrip().endswith("# EOF"):
        text = text.rstrip("\n") + "\n# EOF\n"  # promtool exits 1 without it
    source = workdir / "backfill.om"
    source.write_text(text)
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({done.returncode}):\n{done.stdout}{done.stderr}")


@contextmanager
def prometheus(
    workdir: Path,
    *,
    backfill_text: str | None = None,
    config: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 30.0,
    web_config: Mapping[str, Any] | None = None,
    ca_file: Path | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> Iterator[RunningPrometheus]:
    """Run Prometheus in `workdir` on a free 127.0.0.1 port until the block exits.

    `backfill_text` (OpenMetrics, seconds timestamps) is written into the TSDB before start. The config
    defaults to no scrape jobs; the storage path, listen address and a 10-year retention are always passed,
    so nothing falls back to the system paths, 0.0.0.0:9090, or a 15-day retention that would drop old
    backfilled blocks once newer data arrives.

    `web_config` is Prometheus's --web.config.file (tls_server_config, basic_auth_users). With TLS the URL
    is https and the helper trusts `ca_file`; with basic auth it logs in as `basic_auth` (user, password),
    since only the bcrypt hash is in the web config.
    """
    _require(PROMETHEUS)
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if backfill_text is not None:
        backfill(backfill_text, data_dir, workdir)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(dict(config or DEFAULT_CONFIG), sort_keys=False))
    log_path = workdir / "prometheus.log"
    scheme, context, web_args = "http", None, []
    if web_config is not None:
        web_path = workdir / "web.yml"
        web_path.write_text(yaml.safe_dump(dict(web_config), sort_keys=False))
        web_args = [f"--web.config.file={web_path}"]
        if "tls_server_config" in web_config:
            scheme = "https"
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)

    # the port is free when chosen but may be taken before Prometheus binds it: try a few ports
    for attempt in range(3):
        port = free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={data_dir}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=3650d",
                    *web_args,
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        prom = RunningPrometheus(
            f"{scheme}://127.0.0.1:{port}", workdir, config_path, data_dir, log_path, proc, context, basic_auth
        )
        try:
            if _wait_ready(prom, ready_timeout):
                yield prom
                return
            if attempt == 2:
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{prom.log()}")
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _wait_ready(prom: RunningPrometheus, timeout: float) -> bool:
    """True once /-/ready answers 200; False if the process exited (e.g. port taken); raises on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.proc.poll() is not None:
            return False
        try:
            with prom.open("/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"prometheus not ready after {timeout} s:\n{prom.log()}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    """A sample value as OpenMetrics spells it (NaN, +Inf, -Inf, or the shortest exact decimal)."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)
