"""region-failback against a moto server: the reverse move after region-failover, approved, drained; throttling,
a primary that is not healthy yet, the data-plane switch, and SIGKILL + resume with no repeated write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from scaler.alerts.dispatch import dispatch
from scaler.alerts.payload import synthetic_payload
from scaler.clock import FakeClock
from scaler.runbook.service import RunbookService
from scaler.server.serve import ServeConfig
from scaler.yamlio import load
from tests.runbook.helpers import (
    PRIMARY,
    RUNBOOKS,
    SECONDARY,
    ClientFor,
    Snapshot,
    Web,
    World,
    build_switch,
    failback_params,
    failover_params,
    inverted,
    snapshot,
)
from tests.runbook.test_runbook_e2e import ONCALL, ThrottleEachOperation, effects
from tests.support.moto_server import MotoServer

FAILED_OVER = Snapshot(roles={"east": "SECONDARY", "west": "PRIMARY"}, maintenance_rules=0,
                       rule_priorities=("1", "default"), flag="off", desired=4)
BACK = Snapshot(roles={"east": "PRIMARY", "west": "SECONDARY"}, maintenance_rules=0,
                rule_priorities=("1", "default"), flag="off", desired=0)
TOKEN = "SECRET-hook-token-123"


@pytest.fixture
def failed_over(server_service: RunbookService, server_client: ClientFor, server_world: World, web: Web) -> World:
    """The world after a region-failover: traffic on west, the standby at 4."""
    run = server_service.start("region-failover", failover_params(server_world, web), trigger=ONCALL)
    assert run.status == "succeeded", run.error
    assert snapshot(server_client, server_world) == FAILED_OVER
    web.hooks.clear()
    web.health_probes = 0
    return server_world


def maintenance_on(svc: RunbookService, world: World) -> None:
    """The primary's maintenance page and flag up, as a failover whose last steps could not reach it leaves them."""
    on = svc.start("maintenance-mode", {"state": "on", "listener_arn": world.listener_arn}, trigger=ONCALL)
    assert on.status == "succeeded", on.error


def test_failback_waits_for_approval_once_the_primary_is_healthy_then_moves_back_and_drains(
        server_service: RunbookService, server_client: ClientFor, failed_over: World, web: Web,
        clock: FakeClock) -> None:
    maintenance_on(server_service, failed_over)
    waiting = server_service.start("region-failback", failback_params(failed_over, web), trigger=ONCALL)
    # Health-checked, then nothing changed until someone approves.
    assert (waiting.status, waiting.waiting_on) == ("waiting", "approve")
    assert waiting.step("primary_health").outputs == {"successes": 3, "probes": 3, "last_status": 200}
    assert snapshot(server_client, failed_over).roles == FAILED_OVER.roles
    t0 = clock.t
    run = server_service.approve(waiting.id, who="oncall-lead")
    assert run.status == "succeeded", run.error
    assert snapshot(server_client, failed_over) == BACK
    assert clock.t - t0 >= 300  # the 5 min drain before the standby went down
    assert run.step("scale_primary").status == "skipped" and run.step("approve").outputs["approved_by"] == \
        "oncall-lead"
    assert [h["attachments"][0]["fields"][0]["value"] for h in web.hooks] == ["warning", "info"]
    assert "Best-effort steps that failed: none" in json.dumps(web.hooks[1])
    state = server_service.journal.path.parent
    written = b"".join(p.read_bytes() for p in state.glob("journal.db*")) + server_service.audit.path.read_bytes()
    assert TOKEN.encode() not in written


def test_a_primary_that_is_not_healthy_yet_changes_nothing(server_service: RunbookService,
                                                           server_client: ClientFor, failed_over: World,
                                                           web: Web) -> None:
    web.health = [503] * 100_000
    run = server_service.start("region-failback", failback_params(failed_over, web, health_interval="30s"),
                               trigger=ONCALL)
    assert run.status == "rolled_back"
    assert run.error is not None and run.error.startswith("step primary_health: health check: 0/3")
    assert run.step("approve").status == "pending"
    assert snapshot(server_client, failed_over) == FAILED_OVER


def test_failback_scales_the_primary_first_when_given_its_group(server_service: RunbookService,
                                                               server_client: ClientFor, failed_over: World,
                                                               web: Web) -> None:
    # The primary's own group, scaled in during the outage: built in the primary region like the standby.
    server_client("ec2", PRIMARY).create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"})
    server_client("autoscaling", PRIMARY).create_auto_scaling_group(
        AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateName": "web"}, MinSize=0, MaxSize=10,
        DesiredCapacity=1, AvailabilityZones=[f"{PRIMARY}a"])
    params = failback_params(failed_over, web, primary_asg="web", primary_capacity="6", approval="false")
    run = server_service.start("region-failback", params, trigger=ONCALL)
    assert run.status == "succeeded", run.error
    group = server_client("autoscaling", PRIMARY).describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 6
    assert run.step("scale_primary").outputs["previous"] == 1 and run.step("approve").status == "skipped"


def test_switch_failover_then_failback_inverts_and_un_inverts(server_service: RunbookService,
                                                              server_client: ClientFor, server_world: World,
                                                              web: Web) -> None:
    switch = build_switch(server_client, server_world)
    over = server_service.start("region-failover", failover_params(
        server_world, web, failover_switch=switch.switch, rewrite_records="false"), trigger=ONCALL)
    assert over.status == "succeeded", over.error
    assert inverted(server_client, switch.switch)
    back = server_service.start("region-failback", failback_params(
        server_world, web, failover_switch=switch.switch, rewrite_records="false", approval="false"), trigger=ONCALL)
    assert back.status == "succeeded", back.error
    assert not inverted(server_client, switch.switch)
    assert snapshot(server_client, server_world).roles == {"east": "PRIMARY", "west": "SECONDARY"}  # never touched
    assert [back.step(s).status for s in ("failback", "dns_insync")] == ["skipped", "skipped"]
    assert effects(server_service)["change_resource_record_sets"] == 0


def test_throttling_on_every_call_still_applies_each_effect_once(server_service: RunbookService,
                                                                 server_client: ClientFor, failed_over: World,
                                                                 web: Web) -> None:
    maintenance_on(server_service, failed_over)
    before = effects(server_service)
    throttle = ThrottleEachOperation(2)
    for service, region in (("route53", PRIMARY), ("elbv2", PRIMARY), ("ssm", PRIMARY), ("autoscaling", SECONDARY)):
        server_service.clients.events(service, region).register("before-call", throttle)
    run = server_service.start("region-failback", failback_params(failed_over, web, approval="false"),
                               trigger=ONCALL)
    assert run.status == "succeeded", run.error
    assert snapshot(server_client, failed_over) == BACK
    assert effects(server_service) - before == {"change_resource_record_sets": 1, "delete_rule": 1,
                                                "put_parameter": 1, "set_desired_capacity": 1, "POST": 2}
    assert all(s.attempts == 1 for s in run.steps if s.status != "skipped")


CHILD = """
import json, sys
from pathlib import Path
from scaler.aws import AwsSettings
from scaler.runbook.service import RunbookService, Trigger
runbooks, journal, audit, endpoint, params = sys.argv[1:6]
svc = RunbookService(runbooks_dir=Path(runbooks), journal_path=Path(journal), audit_path=Path(audit),
                     aws=AwsSettings(region="us-east-1", endpoint_url=endpoint))
svc.start("region-failback", json.loads(params), trigger=Trigger("manual", "drill", "killed while draining"))
"""


def test_killed_while_draining_then_resumed_repeats_no_write(server_service: RunbookService, moto: MotoServer,
                                                             server_client: ClientFor, failed_over: World, web: Web,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    hook = f"{web.url}/hook?token={TOKEN}"
    monkeypatch.setenv("DRILL_HOOK", hook)  # a reference, so a different process can resume the run
    params = failback_params(failed_over, web, webhook_url="env:DRILL_HOOK", approval="false",
                             health_interval="100ms", drain="10m")
    before = effects(server_service)
    journal, audit_file = server_service.journal.path, server_service.audit.path  # the child writes there too
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(RUNBOOKS), str(journal), str(audit_file), moto.url, json.dumps(params)],
        env=os.environ | {"DRILL_HOOK": hook}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            newest = server_service.status()[0]
            if newest.runbook == "region-failback" and newest.step("drain").status == "running":
                break
            assert time.monotonic() < deadline, "the child never reached the drain"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    killed = server_service.status()[0]
    assert killed.status == "running"
    done_before = [s.id for s in killed.steps if s.status == "succeeded"]
    assert done_before == ["notify_start", "primary_health", "maintenance_off", "maintenance_flag_off", "switch",
                           "failback", "dns_insync"]
    # t+kill: DNS is back on the primary, the standby still runs until the drain is over.
    assert (snapshot(server_client, failed_over).roles, snapshot(server_client, failed_over).desired) == (
        BACK.roles, 4)

    run = server_service.resume(killed.id)  # on the fake clock: the 10 min drain starts over and passes
    assert run.status == "succeeded", run.error
    assert all(run.step(sid).attempts == 1 for sid in done_before) and run.step("drain").attempts == 2
    assert snapshot(server_client, failed_over) == BACK
    assert effects(server_service) - before == {"change_resource_record_sets": 1, "set_desired_capacity": 1,
                                                "POST": 2}


def test_the_example_region_down_rule_starts_the_failback_when_its_alert_resolves(
        server_service: RunbookService, failed_over: World, web: Web) -> None:
    rule = next(r for r in load(ServeConfig, RUNBOOKS.parent / "examples" / "serve.yaml").triggers
                if r.runbook == "region-failover")
    assert rule.on_resolved is not None and (rule.on_resolved.runbook, rule.on_resolved.auto) == (
        "region-failback", True)
    # The example's placeholder resources swapped for this world's; the alert's label still names the region.
    local = {k: v for k, v in failback_params(failed_over, web).items() if k != "primary_region"}
    here = rule.model_copy(update={"on_resolved": rule.on_resolved.model_copy(
        update={"params": rule.on_resolved.params | local})})
    resolved = synthetic_payload({"alertname": "RegionDown", "region": PRIMARY}, status="resolved",
                                 starts_at=datetime(2026, 12, 3, 4, 0, tzinfo=UTC))
    (out,) = dispatch(resolved, service=server_service, rules=[here])
    assert out.result == "started", out
    run = server_service.status()[0]
    # Started at once, health-checked the primary, and now a person decides.
    assert (run.runbook, run.status, run.waiting_on, run.params["primary_region"]) == (
        "region-failback", "waiting", "approve", PRIMARY)
    assert run.step("primary_health").status == "succeeded" and run.trigger.kind == "alertmanager"
