"""Each action against in-process moto (and a local HTTP server): effect, idempotence, outputs for undo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from scaler.aws import AwsClients, AwsSettings
from scaler.clock import FakeClock
from scaler.errors import PermanentError
from scaler.retry import RetryPolicy
from scaler.runbook.actions import REGISTRY
from scaler.runbook.audit import AuditLog
from scaler.runbook.context import Env, StepContext
from scaler.runbook.errors import StepTimeout
from scaler.runbook.journal import Journal
from scaler.runbook.records import Trigger
from scaler.runbook.redact import Redactor
from tests.runbook.helpers import PRIMARY, SECONDARY, ClientFor, FailNTimes, Web, World, world_of


class Harness:
    """Runs one action the way the engine does: a real StepContext over a journal with one run."""

    def __init__(self, tmp: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.journal = Journal(tmp / "journal.db")
        self.clients = AwsClients(AwsSettings(region=PRIMARY))
        self.env = Env(journal=self.journal, audit=AuditLog(tmp / "audit.jsonl", clock=clock), clients=self.clients,
                       clock=clock, http_timeout=2.0)
        self.runs = 0
        self.redactor = Redactor()

    def new_run(self, step: str = "s") -> str:
        self.runs += 1
        run_id = f"run-{self.runs}"
        self.journal.create(run_id=run_id, runbook="t", definition={}, params={}, trigger=Trigger("manual", "t", "t"),
                            scope=run_id, status="running", dry_run=False, steps=[(step, "x")], now=self.clock.now())
        return run_id

    def ctx(self, run_id: str, *, step: str = "s", phase: str = "run", region: str | None = None,
            timeout: float = 300.0) -> StepContext:
        return StepContext(env=self.env, run_id=run_id, step_id=step, phase=phase, attempt=1,
                           deadline=self.clock.now() + timeout, region=region, redactor=self.redactor,
                           call_policy=RetryPolicy(attempts=3, initial=0.1, jitter=0.0))

    def run(self, action: str, run_id: str, region: str | None = None, timeout: float = 300.0,
            **inputs: Any) -> dict[str, Any]:
        cls = REGISTRY[action]
        return cls().run(cls.inputs.model_validate(inputs), self.ctx(run_id, region=region, timeout=timeout))


@pytest.fixture
def h(tmp_path: Path, clock: FakeClock) -> Harness:
    return Harness(tmp_path, clock)


dns = world_of("dns")
alb = world_of("alb")
flag = world_of("flag")
secrets = world_of("secrets")
standby = world_of("standby")
ecs = world_of("ecs")


def roles(client: ClientFor, world: World) -> dict[str, Any]:
    sets = client("route53", PRIMARY).list_resource_record_sets(HostedZoneId=world.zone_id)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r.get("Failover", r.get("Weight")) for r in sets if r.get("SetIdentifier")}


# -- Route 53 ---------------------------------------------------------------------------------------

def test_upsert_record_is_idempotent_and_restorable(h: Harness, mocked: ClientFor, dns: World) -> None:
    run = h.new_run()
    args = {"zone_id": dns.zone_id, "name": "api.example.com", "values": ["10.9.9.9"], "ttl": 30}
    first = h.run("route53.upsert_record", run, **args)
    again = h.run("route53.upsert_record", run, **args)
    assert (first["changed"], first["previous"], again["changed"], again["change_id"]) == (True, [], False, None)
    h.run("route53.restore_records", run, zone_id=dns.zone_id, records=first["previous"], current=first["records"])
    names = [r["Name"] for r in mocked("route53", PRIMARY).list_resource_record_sets(
        HostedZoneId=dns.zone_id)["ResourceRecordSets"]]
    assert "api.example.com." not in names


def test_failover_swaps_roles_once_and_restores(h: Harness, mocked: ClientFor, dns: World) -> None:
    run = h.new_run()
    out = h.run("route53.failover", run, zone_id=dns.zone_id, name=dns.record, to="west")
    assert roles(mocked, dns) == {"east": "SECONDARY", "west": "PRIMARY"}
    assert h.run("route53.failover", run, zone_id=dns.zone_id, name=dns.record, to="west")["changed"] is False
    h.run("route53.restore_records", run, zone_id=dns.zone_id, records=out["previous"], current=out["records"])
    assert roles(mocked, dns) == {"east": "PRIMARY", "west": "SECONDARY"}
    # The health check stays on the record it belonged to.
    sets = mocked("route53", PRIMARY).list_resource_record_sets(HostedZoneId=dns.zone_id)["ResourceRecordSets"]
    assert [r["SetIdentifier"] for r in sets if r.get("HealthCheckId")] == ["east"]


def test_failover_of_weighted_sets_moves_all_weight(h: Harness, mocked: ClientFor, dns: World) -> None:
    weights = (("east", 100, "10.0.0.1"), ("west", 0, "10.1.0.1"))
    changes = [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": "w.example.com", "Type": "A", "TTL": 60, "SetIdentifier": sid, "Weight": weight,
        "ResourceRecords": [{"Value": ip}]}} for sid, weight, ip in weights]
    mocked("route53", PRIMARY).change_resource_record_sets(HostedZoneId=dns.zone_id,
                                                           ChangeBatch={"Changes": changes})
    h.run("route53.failover", h.new_run(), zone_id=dns.zone_id, name="w.example.com", to="west", weight=50)
    sets = mocked("route53", PRIMARY).list_resource_record_sets(HostedZoneId=dns.zone_id)["ResourceRecordSets"]
    assert {r["SetIdentifier"]: r["Weight"] for r in sets if r["Name"] == "w.example.com."} == {"east": 0, "west": 50}


def test_failover_to_unknown_set_is_permanent(h: Harness, dns: World) -> None:
    with pytest.raises(PermanentError, match="no record set with SetIdentifier 'north'"):
        h.run("route53.failover", h.new_run(), zone_id=dns.zone_id, name=dns.record, to="north")


def test_wait_insync_polls_until_insync(h: Harness, dns: World) -> None:
    # moto is INSYNC at once (AWS starts PENDING): answer PENDING twice to see the polling.
    pending = {"n": 0}

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        pending["n"] += 1
        if pending["n"] <= 2:
            return AWSResponse("http://fake", 200, {}, None), {"ChangeInfo": {"Id": "C1", "Status": "PENDING"}}
        return None

    h.clients.events("route53").register("before-call.route53.GetChange", answer)
    change = h.run("route53.failover", h.new_run(), zone_id=dns.zone_id, name=dns.record, to="west")["change_id"]
    start = h.clock.now()
    out = h.run("route53.wait_insync", h.new_run(), change_id=change, interval=5)
    assert (out, h.clock.now() - start) == ({"status": "INSYNC", "polls": 3}, 10.0)
    assert h.run("route53.wait_insync", h.new_run(), change_id=None) == {"status": "INSYNC", "polls": 0}


def test_get_record_reports_primary(h: Harness, dns: World) -> None:
    out = h.run("route53.get_record", h.new_run(), zone_id=dns.zone_id, name=dns.record, set_identifier="west")
    assert (out["exists"], out["failover"], out["primary"], out["values"]) == (True, "SECONDARY", "east", ["10.1.0.1"])


# -- ELBv2 maintenance rule -------------------------------------------------------------------------

def test_maintenance_rule_takes_lowest_free_priority_and_leaves_other_rules(
        h: Harness, mocked: ClientFor, alb: World) -> None:
    elb = mocked("elbv2", PRIMARY)
    run = h.new_run()
    on = h.run("elb.maintenance_rule", run, listener_arn=alb.listener_arn, enabled=True, body="brb")
    assert (on["changed"], on["was_enabled"], on["priority"]) == (True, False, 2)  # 1 is taken by /api/*
    rule = next(r for r in elb.describe_rules(ListenerArn=alb.listener_arn)["Rules"] if r["Priority"] == "2")
    assert rule["Actions"][0]["FixedResponseConfig"] == {"StatusCode": "503", "ContentType": "text/plain",
                                                         "MessageBody": "brb"}
    assert h.run("elb.maintenance_rule", run, listener_arn=alb.listener_arn, enabled=True)["changed"] is False
    off = h.run("elb.maintenance_rule", h.new_run(), listener_arn=alb.listener_arn, enabled=False)
    assert (off["changed"], off["was_enabled"]) == (True, True)
    left = [r["RuleArn"] for r in elb.describe_rules(ListenerArn=alb.listener_arn)["Rules"] if not r["IsDefault"]]
    assert left == [alb.other_rule_arn]


@pytest.mark.parametrize(("enabled", "calls"), [
    (True, ["describe_rules", "describe_tags", "create_rule"]),
    ("off", ["describe_rules", "describe_tags", "delete_rule"]),
    ("{{ steps.x.was_enabled }}", ["describe_rules", "describe_tags", "create_rule", "delete_rule"]),
], ids=["on", "off", "unknown-until-run"])
def test_maintenance_rule_plan(enabled: Any, calls: list[str]) -> None:
    plan = REGISTRY["elb.maintenance_rule"]().plan({"listener_arn": "arn:l", "enabled": enabled})
    assert [c.operation for c in plan] == calls


# -- SSM --------------------------------------------------------------------------------------------

def test_set_parameter_remembers_previous_and_null_deletes(h: Harness, mocked: ClientFor, flag: World) -> None:
    run = h.new_run()
    out = h.run("ssm.set_parameter", run, name=flag.flag, value="on")
    assert (out["previous"], out["changed"]) == ("off", True)
    # Same step again (a retry): previous is still the value before the step, not "on".
    again = h.run("ssm.set_parameter", run, name=flag.flag, value="on")
    assert (again["previous"], again["changed"]) == ("off", False)
    new = h.run("ssm.set_parameter", h.new_run(), name="/brand/new", value="1")
    assert new["previous"] is None
    h.run("ssm.set_parameter", h.new_run(), name="/brand/new", value=None)
    with pytest.raises(mocked("ssm", PRIMARY).exceptions.ParameterNotFound):
        mocked("ssm", PRIMARY).get_parameter(Name="/brand/new")


def test_set_parameter_refuses_securestring(h: Harness, mocked: ClientFor) -> None:
    mocked("ssm", PRIMARY).put_parameter(Name="/s", Value="x", Type="SecureString")
    with pytest.raises(PermanentError, match="only String"):
        h.run("ssm.set_parameter", h.new_run(), name="/s", value="y")


# -- Secrets Manager --------------------------------------------------------------------------------

def stages(client: ClientFor, sid: str) -> dict[str, list[str]]:
    return client("secretsmanager", PRIMARY).describe_secret(SecretId=sid)["VersionIdsToStages"]


def test_rotation_moves_current_and_applies_value(h: Harness, mocked: ClientFor, secrets: World, web: Web) -> None:
    before = stages(mocked, "prod/db")
    out = h.run("secrets.rotate", h.new_run(), secret_ids=["prod/db"], length=40, apply_to_parameter="/app/{secret_id}",
                test_url=f"{web.url}/auth")
    item = out["rotated"][0]
    after = stages(mocked, "prod/db")
    assert after[item["version_id"]] == ["AWSCURRENT"]  # AWSPENDING cleared
    assert after[item["previous_version_id"]] == ["AWSPREVIOUS"] and item["previous_version_id"] in before
    value = mocked("secretsmanager", PRIMARY).get_secret_value(SecretId="prod/db", VersionStage="AWSCURRENT")
    assert len(value["SecretString"]) == 40 and value["SecretString"] != "initial-db-password"
    applied = mocked("ssm", PRIMARY).get_parameter(Name="/app/prod/db", WithDecryption=True)["Parameter"]["Value"]
    assert applied == value["SecretString"]
    assert web.bearer == [f"Bearer {value['SecretString']}"]
    assert "value" not in str(out).lower().replace("version", "")  # outputs name versions, never values


def test_rotation_retry_after_failure_reuses_the_pending_version(
        h: Harness, mocked: ClientFor, secrets: World) -> None:
    run = h.new_run()
    # finishSecret fails once permanently: the pending version exists, AWSCURRENT has not moved.
    h.clients.events("secretsmanager").register(
        "before-call.secretsmanager.UpdateSecretVersionStage", FailNTimes(1, "AccessDeniedException", 403))
    with pytest.raises(PermanentError):
        h.run("secrets.rotate", run, secret_ids=["prod/db"], apply_to_parameter="/app/db")
    pending = stages(mocked, "prod/db")
    assert sorted(map(sorted, pending.values())) == [["AWSCURRENT"], ["AWSPENDING"]]
    # setSecret was undone: the service still reads the value that is current.
    kept = mocked("ssm", PRIMARY).get_parameter(Name="/app/db", WithDecryption=True)["Parameter"]["Value"]
    assert kept == "initial-db-password"
    h.run("secrets.rotate", run, secret_ids=["prod/db"], apply_to_parameter="/app/db")
    done = stages(mocked, "prod/db")
    assert len(done) == 2  # no second pending version was created
    current = mocked("secretsmanager", PRIMARY).get_secret_value(SecretId="prod/db", VersionStage="AWSCURRENT")
    assert set(pending) == set(done) and done[current["VersionId"]] == ["AWSCURRENT"]
    applied = mocked("ssm", PRIMARY).get_parameter(Name="/app/db", WithDecryption=True)["Parameter"]["Value"]
    assert applied == current["SecretString"]
    # And once finished, the same step again changes nothing.
    assert h.run("secrets.rotate", run, secret_ids=["prod/db"])["rotated"][0]["version_id"] == current["VersionId"]
    assert len(stages(mocked, "prod/db")) == 2


def test_restore_puts_the_previous_version_back(h: Harness, mocked: ClientFor, secrets: World) -> None:
    out = h.run("secrets.rotate", h.new_run(), secret_ids=["prod/db", "prod/api"], apply_to_parameter="/p/{secret_id}")
    h.run("secrets.restore", h.new_run(), rotated=out["rotated"])
    for sid, original in (("prod/db", "initial-db-password"), ("prod/api", "initial-api-key")):
        now = mocked("secretsmanager", PRIMARY).get_secret_value(SecretId=sid, VersionStage="AWSCURRENT")
        assert now["SecretString"] == original
        param = mocked("ssm", PRIMARY).get_parameter(Name=f"/p/{sid}", WithDecryption=True)["Parameter"]["Value"]
        assert param == original


# -- Scaling ----------------------------------------------------------------------------------------

def test_asg_desired_with_previous_and_wait(h: Harness, mocked: ClientFor, standby: World) -> None:
    run = h.new_run()
    out = h.run("asg.set_desired", run, region=SECONDARY, group="standby", desired=3, wait_in_service=True)
    assert out == {"previous": 0, "desired": 3, "changed": True, "in_service": 3}
    group = mocked("autoscaling", SECONDARY).describe_auto_scaling_groups(AutoScalingGroupNames=["standby"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 3


@pytest.mark.parametrize(("group", "desired", "message"), [
    ("standby", 11, "outside min 0 .. max 10"),
    ("missing", 1, "not found"),
], ids=["above-max", "no-group"])
def test_asg_refusals(h: Harness, standby: World, group: str, desired: int, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        h.run("asg.set_desired", h.new_run(), region=SECONDARY, group=group, desired=desired)


def test_ecs_desired(h: Harness, mocked: ClientFor, ecs: World) -> None:
    out = h.run("ecs.set_desired", h.new_run(), region=SECONDARY, cluster="standby", service="web", desired=4)
    assert (out["previous"], out["changed"]) == (1, True)
    svc = mocked("ecs", SECONDARY).describe_services(cluster="standby", services=["web"])["services"][0]
    assert svc["desiredCount"] == 4
    with pytest.raises(PermanentError, match="not found"):
        h.run("ecs.set_desired", h.new_run(), region=SECONDARY, cluster="standby", service="nope", desired=1)


# -- HTTP -------------------------------------------------------------------------------------------

def test_notify_posts_slack_payload_and_retries_5xx(h: Harness, web: Web) -> None:
    web.hook_status = [503]
    out = h.run("notify.webhook", h.new_run(), url=f"{web.url}/hook", text="db down", severity="critical",
                title="Failover")
    assert out == {"status": 200, "severity": "critical"}
    assert len(web.hooks) == 1  # the 503 was not recorded as delivered; the retry was
    body = web.hooks[0]
    assert body["text"] == "[CRITICAL] Failover: db down"
    assert body["attachments"][0]["color"] == "#a30200"
    assert {"title": "run", "value": "run-1", "short": True} in body["attachments"][0]["fields"]
    assert web.hook_headers[0]["Idempotency-Key"]


def test_notify_4xx_is_permanent(h: Harness, web: Web) -> None:
    web.hook_status = [404, 404]
    with pytest.raises(PermanentError, match="status 404"):
        h.run("notify.webhook", h.new_run(), url=f"{web.url}/hook", text="x")
    assert web.hook_status == [404]  # not retried


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://example.com/x"], ids=["file", "ftp"])
def test_only_http_urls_are_fetched(h: Harness, url: str) -> None:
    with pytest.raises(PermanentError, match="only http and https"):
        h.run("notify.webhook", h.new_run(), url=url, text="x")


def test_health_check_needs_consecutive_successes(h: Harness, web: Web) -> None:
    web.health = [200, 503, 200, 200, 503]  # then 200 forever
    out = h.run("http.health_check", h.new_run(), url=f"{web.url}/health", successes=3, interval=2)
    # good, bad (reset), good, good, bad (reset), good, good, good -> done at probe 8
    assert (out["probes"], web.health_probes, out["successes"]) == (8, 8, 3)


def test_health_check_fails_at_the_deadline(h: Harness, web: Web) -> None:
    web.health = [503] * 100
    with pytest.raises(StepTimeout, match=r"0/2 consecutive successes after 6 probes, last answer 503"):
        h.run("http.health_check", h.new_run(), url=f"{web.url}/health", successes=2, interval=10, timeout=55)


def test_health_check_counts_refused_connection_as_failure(h: Harness) -> None:
    with pytest.raises(StepTimeout, match="last answer"):
        h.run("http.health_check", h.new_run(), url="http://127.0.0.1:9/health", successes=1, interval=1, timeout=2)


def test_wait_uses_the_clock_and_respects_the_timeout(h: Harness) -> None:
    start = h.clock.now()
    assert h.run("wait", h.new_run(), seconds=90) == {"waited": 90.0}
    assert h.clock.now() - start == 90.0
    with pytest.raises(StepTimeout):
        h.run("wait", h.new_run(), seconds=90, timeout=60)
