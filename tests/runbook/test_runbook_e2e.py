"""Every shipped runbook end to end against a moto server, read back from the providers; faults and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from scaler.clock import FakeClock
from scaler.runbook.journal import Journal
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import (
    PRIMARY,
    RUNBOOKS,
    SECONDARY,
    ClientFor,
    FailNTimes,
    Snapshot,
    Web,
    World,
    current_secret,
    failover_params,
    make_service,
    snapshot,
)
from tests.support.moto_server import MotoServer

ONCALL = Trigger(kind="alertmanager", who="pager", why="RegionDown: us-east-1 error rate 42%")
BEFORE = Snapshot(roles={"east": "PRIMARY", "west": "SECONDARY"}, maintenance_rules=0,
                  rule_priorities=("1", "default"), flag="off", desired=0)


def audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def effects(svc: RunbookService, phase: str = "run") -> Counter[str]:
    """Successful provider calls that change something, by operation, from the audit trail."""
    writes = {"change_resource_record_sets", "create_rule", "delete_rule", "put_parameter", "delete_parameter",
              "set_desired_capacity", "put_secret_value", "update_secret_version_stage", "POST"}
    return Counter(e["operation"] for e in audit(svc.audit.path)
                   if e["event"] == "call" and e["phase"] == phase and "result" in e and e["operation"] in writes)


class ThrottleEachOperation:
    """A before-call hook that throttles the first `n` calls of every operation it sees."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.seen[event_name] += 1
        if self.seen[event_name] <= self.n:
            return (AWSResponse("http://fault", 400, {}, None),
                    {"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}})
        return None


# -- region-failover --------------------------------------------------------------------------------

def test_region_failover_end_state(server_service: RunbookService, server_client: ClientFor,
                                   server_world: World, web: Web) -> None:
    assert snapshot(server_client, server_world) == BEFORE
    run = server_service.start("region-failover", failover_params(server_world, web), trigger=ONCALL)
    assert run.status == "succeeded", run.error
    after = snapshot(server_client, server_world)
    # Traffic goes to west; the standby runs 4 instances; the maintenance page and flag are gone again.
    assert after == Snapshot(roles={"east": "SECONDARY", "west": "PRIMARY"}, maintenance_rules=0,
                             rule_priorities=("1", "default"), flag="off", desired=4)
    group = server_client("autoscaling", SECONDARY).describe_auto_scaling_groups(AutoScalingGroupNames=["standby"])
    assert sum(i["LifecycleState"] == "InService" for i in group["AutoScalingGroups"][0]["Instances"]) == 4
    assert [h["attachments"][0]["fields"][0]["value"] for h in web.hooks] == ["critical", "warning"]
    assert "pager" in web.hooks[0]["text"] and "RegionDown" in web.hooks[0]["text"]
    assert web.health_probes == 3
    assert run.step("maintenance_on").outputs["priority"] == 2  # lowest free; /api/* keeps priority 1
    started = audit(server_service.audit.path)[0]
    assert started["event"] == "run.started" and started["trigger"] == {
        "kind": "alertmanager", "who": "pager", "why": ONCALL.why, "key": None}


def test_throttling_on_every_call_still_applies_each_effect_once(
        server_service: RunbookService, server_client: ClientFor, server_world: World, web: Web) -> None:
    throttle = ThrottleEachOperation(2)
    for service, region in (("route53", PRIMARY), ("elbv2", PRIMARY), ("ssm", PRIMARY),
                            ("autoscaling", SECONDARY)):
        server_service.clients.events(service, region).register("before-call", throttle)
    run = server_service.start("region-failover", failover_params(server_world, web), trigger=ONCALL)
    assert run.status == "succeeded", run.error
    assert snapshot(server_client, server_world).roles == {"east": "SECONDARY", "west": "PRIMARY"}
    assert effects(server_service) == {"change_resource_record_sets": 1, "create_rule": 1, "delete_rule": 1,
                                       "put_parameter": 2, "set_desired_capacity": 1, "POST": 2}
    throttled = [e for e in audit(server_service.audit.path)
                 if e["event"] == "call" and e.get("error", {}).get("code") == "Throttling"]
    assert len(throttled) == 2 * len(throttle.seen)  # every operation was throttled twice, then went through
    assert all(s.attempts == 1 for s in run.steps)  # retried per call, so no step had to start over


def test_permanent_error_mid_run_rolls_everything_back(server_service: RunbookService, server_client: ClientFor,
                                                       server_world: World, web: Web) -> None:
    server_service.clients.events("autoscaling", SECONDARY).register(
        "before-call.autoscaling.SetDesiredCapacity", FailNTimes(100, "AccessDenied", 403))
    run = server_service.start("region-failover", failover_params(server_world, web), trigger=ONCALL)
    assert run.status == "rolled_back"
    assert run.error and "scale_standby" in run.error and "AccessDenied" in run.error
    assert snapshot(server_client, server_world) == BEFORE
    assert {s.id: s.compensation for s in run.steps if s.compensation} == {
        "maintenance_on": "done", "maintenance_flag": "done", "failover": "done"}
    assert run.step("health").status == "pending" and web.health_probes == 0


# -- the other runbooks -----------------------------------------------------------------------------

def test_maintenance_mode_on_then_off(server_service: RunbookService, server_client: ClientFor,
                                      server_world: World) -> None:
    params = {"listener_arn": server_world.listener_arn, "message": "Back at 14:00 UTC"}
    on = server_service.start("maintenance-mode", params | {"state": "on"}, trigger=ONCALL)
    assert on.status == "succeeded", on.error
    rules = server_client("elbv2", PRIMARY).describe_rules(ListenerArn=server_world.listener_arn)["Rules"]
    fixed = [r for r in rules if r["Actions"][0]["Type"] == "fixed-response"]
    assert [(r["Priority"], r["Actions"][0]["FixedResponseConfig"]["StatusCode"],
             r["Actions"][0]["FixedResponseConfig"]["MessageBody"]) for r in fixed] == [("2", "503",
                                                                                         "Back at 14:00 UTC")]
    assert snapshot(server_client, server_world).flag == "on"
    off = server_service.start("maintenance-mode", params | {"state": "off"}, trigger=ONCALL)
    assert off.status == "succeeded", off.error
    after = snapshot(server_client, server_world)
    assert (after.maintenance_rules, after.rule_priorities, after.flag) == (0, ("1", "default"), "off")


def test_rotate_secret(server_service: RunbookService, server_client: ClientFor, server_world: World,
                       web: Web) -> None:
    old_version, old_value = current_secret(server_client, "prod/db")
    run = server_service.start("rotate-secret", {"secret_id": "prod/db", "apply_to_parameter": "/app/db/password",
                                                 "test_url": f"{web.url}/auth", "length": "48"}, trigger=ONCALL)
    assert run.status == "succeeded", run.error
    version, value = current_secret(server_client, "prod/db")
    assert version != old_version and value != old_value and len(value) == 48
    stages = server_client("secretsmanager", PRIMARY).describe_secret(SecretId="prod/db")["VersionIdsToStages"]
    assert stages == {old_version: ["AWSPREVIOUS"], version: ["AWSCURRENT"]}
    applied = server_client("ssm", PRIMARY).get_parameter(Name="/app/db/password", WithDecryption=True)
    assert applied["Parameter"]["Value"] == value and web.bearer == [f"Bearer {value}"]


def test_security_lockdown(server_service: RunbookService, server_client: ClientFor, server_world: World,
                           web: Web) -> None:
    before = {sid: current_secret(server_client, sid) for sid in server_world.secrets}
    run = server_service.start("security-lockdown", {
        "secret_ids": ",".join(server_world.secrets), "listener_arn": server_world.listener_arn,
        "webhook_url": f"{web.url}/hook?token=SECRET-hook-token-123"}, trigger=ONCALL)
    assert run.status == "succeeded", run.error
    for sid, (version, value) in before.items():
        assert current_secret(server_client, sid)[0] != version
        assert current_secret(server_client, sid)[1] != value
    after = snapshot(server_client, server_world)
    assert (after.maintenance_rules, after.flag) == (1, "on")  # stays on until someone lifts it
    assert len(web.hooks) == 1 and web.hooks[0]["text"].startswith("[CRITICAL] Security lockdown")
    assert "prod/db" in web.hooks[0]["text"] and "prod/api" in web.hooks[0]["text"]


# -- a crash --------------------------------------------------------------------------------------------

CHILD = """
import json, sys
from pathlib import Path
from scaler.aws import AwsSettings
from scaler.runbook.service import RunbookService, Trigger
runbooks, journal, audit, endpoint, params = sys.argv[1:6]
svc = RunbookService(runbooks_dir=Path(runbooks), journal_path=Path(journal), audit_path=Path(audit),
                     aws=AwsSettings(region="us-east-1", endpoint_url=endpoint))
svc.start("region-failover", json.loads(params), trigger=Trigger("manual", "drill", "process killed mid-run"))
"""


def test_killed_mid_run_then_resumed_repeats_no_finished_step(tmp_path: Path, moto: MotoServer,
                                                              server_client: ClientFor, server_world: World,
                                                              web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    web.health = [503] * 10_000  # the secondary is not healthy yet: the child sits in the health step
    hook = f"{web.url}/hook?token=SECRET-hook-token-123"
    monkeypatch.setenv("DRILL_HOOK", hook)  # a reference, so a different process can resume the run
    params = failover_params(server_world, web, webhook_url="env:DRILL_HOOK", health_interval="30s")
    state = tmp_path / "state"
    state.mkdir()
    journal, audit_file = state / "journal.db", state / "audit.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(RUNBOOKS), str(journal), str(audit_file), moto.url, json.dumps(params)],
        env=os.environ | {"DRILL_HOOK": hook}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            runs = Journal(journal).runs() if journal.exists() else []
            if runs and runs[0].step("health").status == "running" and web.health_probes >= 1:
                break
            assert time.monotonic() < deadline, "the child never reached the health step"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    [killed] = Journal(journal).runs()
    assert killed.status == "running"
    done_before = [s.id for s in killed.steps if s.status == "succeeded"]
    assert done_before == ["notify_start", "maintenance_on", "maintenance_flag", "failover", "dns_insync",
                           "scale_standby"]

    web.health = []  # the secondary recovers
    svc = make_service(tmp_path, endpoint_url=moto.url, clock=FakeClock())
    run = svc.resume(killed.id)
    assert run.status == "succeeded", run.error
    assert all(run.step(sid).attempts == 1 for sid in done_before)
    assert run.step("health").attempts == 2
    assert effects(svc) == {"change_resource_record_sets": 1, "create_rule": 1, "delete_rule": 1,
                            "put_parameter": 2, "set_desired_capacity": 1, "POST": 2}
    assert len(web.hooks) == 2
    assert snapshot(server_client, server_world).roles == {"east": "SECONDARY", "west": "PRIMARY"}
