"""End to end: a real Alertmanager posts to `scaler serve`, which runs real runbooks against a moto server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from scaler.aws import AwsSettings
from scaler.runbook.service import RunbookService, RunRecord
from tests.conftest import ROOT
from tests.runbook.helpers import PRIMARY, SECONDARY, World, build_world, failover_params, snapshot, web_server
from tests.support.alertmanager import Alertmanager, alertmanager
from tests.support.moto_server import CREDENTIALS, MotoServer, moto_server

TOKEN = "e2e-webhook-token-5f1c0a9b7e3d"
TOKEN_ENV = "SCALER_E2E_WEBHOOK_TOKEN"
ClientFor = Callable[[str, str], Any]


@pytest.fixture(scope="module")
def moto_module() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def moto(moto_module: MotoServer) -> MotoServer:
    moto_module.reset()  # moto's state is per process, not per server: start each test empty
    return moto_module


@pytest.fixture
def client(moto: MotoServer) -> ClientFor:
    made: dict[tuple[str, str], Any] = {}

    def get(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = boto3.client(service, region_name=region, endpoint_url=moto.url)
        return made[(service, region)]

    return get


@dataclass
class Serve:
    """A `scaler serve` process: its URL, and read-only views of its metrics and journal."""

    url: str
    proc: subprocess.Popen[str]
    service: RunbookService
    log_path: Path

    def metric(self, line_start: str) -> float:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(line_start + " "):
                    return float(line.split()[-1])
        return 0.0

    def runs(self) -> list[RunRecord]:
        return self.service.status()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def scaler_serve(tmp: Path, *, moto: MotoServer, triggers: list[dict]) -> Iterator[Serve]:
    """Write a serve config, start `python -m scaler.cli.serve` on a free port, stop it with SIGTERM."""
    state = tmp / "state"
    config = {
        "listen": "127.0.0.1:0",
        "webhook": {"token_env": TOKEN_ENV},
        "runbooks_dir": str(ROOT / "runbooks"),
        "journal": str(state / "journal.db"),
        "audit": str(state / "audit.jsonl"),
        "aws": {"region": PRIMARY, "endpoint_url": moto.url},
        "triggers": triggers,
    }
    path = tmp / "serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, **CREDENTIALS, TOKEN_ENV: TOKEN}
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scaler.cli.serve", str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        url = _first_line_url(proc, log_path)
        wait_for("/readyz", lambda: _ready(url), 30)
        # Another process on the same journal, as `scaler runbook status|approve` would be.
        service = RunbookService(runbooks_dir=ROOT / "runbooks", journal_path=state / "journal.db",
                                 audit_path=state / "audit.jsonl",
                                 aws=AwsSettings(region=PRIMARY, endpoint_url=moto.url))
        yield Serve(url, proc, service, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            raise AssertionError(f"scaler serve did not stop on SIGTERM:\n{log_path.read_text()}") from None
    assert code == 0, f"scaler serve exited {code}:\n{log_path.read_text()}"
    assert TOKEN not in log_path.read_text()


def _first_line_url(proc: subprocess.Popen[str], log_path: Path) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(timeout=30)
    prefix = "scaler serve: listening on "
    if not line or not line[0].startswith(prefix):
        proc.kill()
        raise AssertionError(f"scaler serve did not start ({line}):\n{log_path.read_text()}")
    return line[0][len(prefix):].strip()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as e:
        assert (e.code, e.read().decode().strip()) == (503, "preparing AWS clients")
        return False


def wait_for(what: str, check: Callable[[], Any], timeout: float, *context: Serve | Alertmanager) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    logs = "\n\n".join(c.log()[-4000:] for c in context)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


def firing(labels: dict[str, str], summary: str) -> dict:
    return {"labels": labels, "annotations": {"summary": summary},
            "startsAt": datetime.now(UTC).isoformat(), "generatorURL": "http://prometheus.local/graph"}


def finished(serve: Serve, runbook: str, n: int = 1) -> list[RunRecord]:
    runs = [r for r in serve.runs() if r.runbook == runbook]
    return runs if len(runs) >= n and all(r.finished or r.status == "waiting" for r in runs) else []


# ---------------------------------------------------------------------------------------------------------


def test_region_down_alert_fails_over_once_despite_duplicate_deliveries(
    tmp_path: Path, moto: MotoServer, client: ClientFor
) -> None:
    world = build_world(client, frozenset({"dns", "alb", "standby", "flag"}))
    with web_server() as web:
        params = failover_params(world, web, health_interval="100ms", health_successes="1",
                                 primary_region="{{ labels.region }}")
        rule = {"name": "region-down", "match": {"alertname": "RegionDown"}, "runbook": "region-failover",
                "auto": True, "params": params}
        with scaler_serve(tmp_path, moto=moto, triggers=[rule]) as serve, \
                alertmanager(tmp_path / "am-a", webhook_url=f"{serve.url}/alertmanager", token=TOKEN,
                             repeat_interval="1s") as am_a, \
                alertmanager(tmp_path / "am-b", webhook_url=f"{serve.url}/alertmanager", token=TOKEN,
                             repeat_interval="1s") as am_b:
            alert = firing({"alertname": "RegionDown", "region": PRIMARY, "severity": "critical"},
                           "us-east-1 probes failing")
            # An HA pair without gossip: both notify. Prometheus also re-sends, and repeat_interval=1s makes
            # each Alertmanager deliver the same firing group again every second.
            for am in (am_a, am_b, am_a):
                am.post_alerts([alert])
            (run,) = wait_for("the failover run to finish", lambda: finished(serve, "region-failover"), 60,
                              serve, am_a)
            wait_for("repeated deliveries", lambda: serve.metric("scaler_webhook_accepted_total") >= 4, 30,
                     serve, am_a)
            runs = serve.runs()
            duplicates = serve.metric("scaler_trigger_duplicates_total")
            started = serve.metric('scaler_trigger_runs_started_total{mode="auto",runbook="region-failover"}')

        assert [r.id for r in runs] == [run.id]  # one run, however many deliveries
        assert duplicates >= 3 and started == 1
        assert run.status == "succeeded", (run.error, [(s.id, s.status, s.error) for s in run.steps])
        assert run.trigger.kind == "alertmanager" and run.trigger.who == "alertmanager/scaler"
        assert run.trigger.key.startswith("alertmanager:") and run.trigger.key.endswith(":firing")
        assert "RegionDown firing" in run.trigger.why and "us-east-1 probes failing" in run.trigger.why
        assert run.params["primary_region"] == PRIMARY  # templated from the alert's labels
        assert [s.status for s in run.steps] == ["succeeded"] * len(run.steps)
        # the chat heard about it twice, start and end, with the alert as the reason
        assert len(web.hooks) == 2 and "RegionDown firing" in web.hooks[0]["text"]

    # The end state, read back from the providers.
    state = snapshot(client, world)
    assert state.roles == {"east": "SECONDARY", "west": "PRIMARY"}  # Route 53 failed over
    assert state.desired == 4  # standby scaled up in the secondary region
    assert state.maintenance_rules == 0 and "1" in state.rule_priorities  # page down again, /api/* rule kept
    flag = client("ssm", PRIMARY).get_parameter(Name=world.flag)["Parameter"]
    assert (flag["Value"], flag["Version"]) == ("off", 3)  # off -> on during the cutover -> off
    group = client("autoscaling", SECONDARY).describe_auto_scaling_groups(AutoScalingGroupNames=[world.asg])
    assert len(group["AutoScalingGroups"][0]["Instances"]) == 4


def test_resolved_alert_starts_the_recovery_runbook_which_waits_for_approval(
    tmp_path: Path, moto: MotoServer, client: ClientFor
) -> None:
    world: World = build_world(client, frozenset({"alb", "flag"}))
    mode = {"listener_arn": world.listener_arn, "region": PRIMARY}
    rule = {"name": "db-corrupt", "match": {"alertname": "DbCorrupt"}, "runbook": "maintenance-mode",
            "auto": True, "params": {**mode, "state": "on", "message": "{{ annotations.summary }}"},
            "on_resolved": {"runbook": "maintenance-mode", "params": {**mode, "state": "off"}}}
    with scaler_serve(tmp_path, moto=moto, triggers=[rule]) as serve, \
            alertmanager(tmp_path / "am", webhook_url=f"{serve.url}/alertmanager", token=TOKEN) as am:
        alert = firing({"alertname": "DbCorrupt", "db": "orders"}, "Restoring the orders database")
        am.post_alerts([alert])
        (on,) = wait_for("maintenance on", lambda: finished(serve, "maintenance-mode"), 30, serve, am)
        assert on.status == "succeeded"
        assert client("ssm", PRIMARY).get_parameter(Name=world.flag)["Parameter"]["Value"] == "on"

        # t+: the alert resolves; Alertmanager sends status=resolved and the recovery run waits for a human.
        am.post_alerts([{**alert, "endsAt": datetime.now(UTC).isoformat()}])
        runs = wait_for("the recovery run", lambda: finished(serve, "maintenance-mode", 2), 30, serve, am)
        off = next(r for r in runs if r.id != on.id)
        assert (off.status, off.waiting_on, off.params["state"]) == ("waiting", "start", "off")
        assert off.trigger.key.endswith(":resolved")
        assert client("ssm", PRIMARY).get_parameter(Name=world.flag)["Parameter"]["Value"] == "on"

        # `scaler runbook approve RUN_ID`, through the same service API
        assert serve.service.approve(off.id, who="oncall").status == "succeeded"
        assert serve.metric('scaler_trigger_runs_started_total{mode="approval",runbook="maintenance-mode"}') == 1
    assert client("ssm", PRIMARY).get_parameter(Name=world.flag)["Parameter"]["Value"] == "off"
    rules = client("elbv2", PRIMARY).describe_rules(ListenerArn=world.listener_arn)["Rules"]
    assert not [r for r in rules if r["Actions"][0]["Type"] == "fixed-response"]


def test_alertmanager_with_the_wrong_token_is_refused_and_nothing_runs(
    tmp_path: Path, moto: MotoServer
) -> None:
    rule = {"name": "r", "match": {"alertname": "DbCorrupt"}, "runbook": "maintenance-mode", "auto": True,
            "params": {"listener_arn": "arn:x", "state": "on"}}
    with scaler_serve(tmp_path, moto=moto, triggers=[rule]) as serve, \
            alertmanager(tmp_path / "am", webhook_url=f"{serve.url}/alertmanager",
                         token="not-the-token-at-all-000") as am:
        am.post_alerts([firing({"alertname": "DbCorrupt"}, "x")])
        wait_for("a refused delivery",
                 lambda: serve.metric('scaler_webhook_rejected_total{reason="unauthorized"}') >= 1, 30, serve, am)
        time.sleep(0.5)
        assert serve.runs() == []
        assert serve.metric("scaler_webhook_accepted_total") == 0
        assert "401" in am.log()
