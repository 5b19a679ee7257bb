"""database-restore and deployment-rollback end to end against a moto server (Kubernetes: the fake API server),
read back from the providers; each also under throttling, killed with SIGKILL and resumed (no write repeated),
and searched for secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler import logs
from scaler.alerts.fit import check_rules_fit
from scaler.cli.runbook import app
from scaler.clock import FakeClock
from scaler.live.config import load_run_config
from scaler.runbook.journal import Journal
from scaler.runbook.records import RunRecord
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import (
    DB_PASSWORD,
    PRIMARY,
    RUNBOOKS,
    ClientFor,
    DbState,
    DbWorld,
    EcsWorld,
    FailNTimes,
    Web,
    build_database,
    build_rollout_ecs,
    database_params,
    database_state,
    ecs_task_definition,
    make_service,
    rollout_params,
)
from tests.support.fake_kube import FakeKube, path_of, replicasets_path
from tests.support.moto_server import MotoServer

ROOT = RUNBOOKS.parent
ALERT = Trigger(kind="health-rule", who="scaler/health-rules", why="errors-rollback: error_rate 0.083 > 0.05 for 300s")
CORRUPTED = Trigger(kind="manual", who="dba", why="orders table corrupted at 11:58 UTC")
HOOK_TOKEN = "SECRET-hook-token-123"
# Successful provider calls that change something (from the audit trail); Kubernetes writes are counted at the
# fake API server, which sees every process's requests.
WRITES = {"restore_db_instance_to_point_in_time", "restore_db_cluster_to_point_in_time", "create_db_instance",
          "create_rule", "delete_rule", "put_parameter", "delete_parameter", "change_resource_record_sets",
          "update_service", "tag_resource", "POST"}
CHECKOUT = path_of("deployment", "checkout", namespace="shop")


def audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def effects(svc: RunbookService, phase: str = "run") -> Counter[str]:
    return Counter(e["operation"] for e in audit(svc.audit.path)
                   if e["event"] == "call" and e["phase"] == phase and "result" in e and e["operation"] in WRITES)


def patches(kube: FakeKube) -> int:
    return sum(r.method == "PATCH" for r in kube.requests_to(CHECKOUT))


# -- the scenarios: a world, the parameters, the state read back, what must be written ----------------------


@dataclass(frozen=True)
class Case:
    """One runbook on one kind of world."""

    runbook: str
    trigger: Trigger
    build: Callable[[ClientFor, FakeKube], Any]
    params: Callable[[Any, Web, FakeKube], dict[str, str]]
    state: Callable[[ClientFor, Any, FakeKube], Any]
    before: Callable[[Any], Any]
    after: Callable[[Any, RunRecord], Any]
    writes: dict[str, int]
    kube_patches: int = 0
    slow: str = ""  # the step a crash test kills the run in, while the provider is still busy with it


def db_before(world: DbWorld) -> DbState:
    return DbState(restored=(), restored_status=(), source_status="available", parameter=world.endpoint,
                   cname=world.endpoint, maintenance_rules=0, flag="off")


def db_after(world: DbWorld, run: RunRecord) -> DbState:
    restored = run.step("restore").outputs or {}
    # The application uses the restored database; the damaged one is still there, unchanged; maintenance is off.
    return DbState(restored=(restored["target"],), restored_status=("available",), source_status="available",
                   parameter=restored["endpoint"], cname=restored["endpoint"], maintenance_rules=0, flag="off")


def ecs_state(client: ClientFor, world: EcsWorld, _: FakeKube) -> tuple[str, str | None]:
    svc = client("ecs", PRIMARY).describe_services(cluster="shop", services=["api"], include=["TAGS"])["services"][0]
    return svc["taskDefinition"], {t["key"]: t["value"] for t in svc.get("tags", [])}.get("scaler:rolled-back-to")


def kube_state(_: ClientFor, __: Any, kube: FakeKube) -> tuple[str, str, list[tuple[str, int]]]:
    w = kube.workloads[("shop", "deployments", "checkout")]
    assert w.template is not None
    return (w.annotations["deployment.kubernetes.io/revision"], w.template["spec"]["containers"][0]["image"],
            [(rs.template["spec"]["containers"][0]["image"], rs.revision) for rs in kube.owned("checkout",
                                                                                              namespace="shop")])


DB_WRITES = {"create_rule": 1, "delete_rule": 1, "put_parameter": 3, "change_resource_record_sets": 1, "POST": 2}
CASES = {
    "database-restore": Case(
        "database-restore", CORRUPTED,
        build=lambda client, _: build_database(client, "instance"),
        params=lambda world, web, _: database_params(world, web),
        state=lambda client, world, _: database_state(client, world),
        before=db_before, after=db_after,
        writes={"restore_db_instance_to_point_in_time": 1, **DB_WRITES}, slow="restore",
    ),
    "database-restore-aurora": Case(
        "database-restore", CORRUPTED,
        build=lambda client, _: build_database(client, "cluster"),
        params=lambda world, web, _: database_params(world, web),
        state=lambda client, world, _: database_state(client, world),
        before=db_before, after=db_after,
        writes={"restore_db_cluster_to_point_in_time": 1, "create_db_instance": 1, **DB_WRITES}, slow="restore",
    ),
    "deployment-rollback-ecs": Case(
        "deployment-rollback", ALERT,
        build=lambda client, _: build_rollout_ecs(client),
        params=lambda world, web, _: rollout_params("ecs", web),
        state=ecs_state,
        before=lambda world: (world.bad, None),
        after=lambda world, _: (world.good, world.good),
        writes={"update_service": 1, "tag_resource": 1, "POST": 2}, slow="rollback",
    ),
    "deployment-rollback-kubernetes": Case(
        "deployment-rollback", ALERT,
        build=lambda client, kube: None,
        params=lambda world, web, kube: rollout_params("kubernetes", web, kubeconfig=str(kube.kubeconfig)),
        state=kube_state,
        before=lambda _: ("2", "shop/checkout:2", [("shop/checkout:1", 1), ("shop/checkout:2", 2)]),
        # revision 1's ReplicaSet runs again as revision 3, as after `kubectl rollout undo`
        after=lambda _, __: ("3", "shop/checkout:1", [("shop/checkout:1", 3), ("shop/checkout:2", 2)]),
        writes={"POST": 2}, kube_patches=1, slow="rollback",
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
def world(case: Case, server_client: ClientFor, kube: FakeKube) -> Any:
    return case.build(server_client, kube)


def test_end_to_end_end_state(case: Case, world: Any, server_service: RunbookService, server_client: ClientFor,
                              kube: FakeKube, web: Web) -> None:
    assert case.state(server_client, world, kube) == case.before(world)
    run = server_service.start(case.runbook, case.params(world, web, kube), trigger=case.trigger)
    assert run.status == "succeeded", run.error
    assert case.state(server_client, world, kube) == case.after(world, run)
    assert effects(server_service) == case.writes and patches(kube) == case.kube_patches
    assert len(web.hooks) == 2 and case.trigger.who in web.hooks[0]["text"]  # started and finished


def test_throttling_on_every_call_still_applies_each_effect_once(
        case: Case, world: Any, server_service: RunbookService, server_client: ClientFor, kube: FakeKube,
        web: Web) -> None:
    throttle = ThrottleEachOperation(2)
    for service in ("rds", "ssm", "elbv2", "route53", "ecs"):
        server_service.clients.events(service, PRIMARY).register("before-call", throttle)
    for path in (CHECKOUT, replicasets_path("shop")):
        kube.fail(path, 429, times=2)
    run = server_service.start(case.runbook, case.params(world, web, kube), trigger=case.trigger)
    assert run.status == "succeeded", run.error
    assert case.state(server_client, world, kube) == case.after(world, run)
    assert effects(server_service) == case.writes and patches(kube) == case.kube_patches
    throttled = [e for e in audit(server_service.audit.path)
                 if e["event"] == "call" and e.get("error", {}).get("code") == "Throttling"]
    assert len(throttled) == 2 * len(throttle.seen)
    assert all(s.attempts == 1 for s in run.steps)  # retried per call, so no step had to start over


class ThrottleEachOperation:
    """A before-call hook that throttles the first `n` calls of every operation it sees."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        self.seen[event_name] += 1
        if self.seen[event_name] <= self.n:
            return (AWSResponse("http://fault", 400, {}, None),
                    {"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}})
        return None


# -- a crash mid-step ------------------------------------------------------------------------------------

CHILD = """
import json, sys
from pathlib import Path
from scaler.aws import AwsSettings
from scaler.runbook.service import RunbookService, Trigger
runbooks, journal, audit, endpoint, runbook, params = sys.argv[1:7]
svc = RunbookService(runbooks_dir=Path(runbooks), journal_path=Path(journal), audit_path=Path(audit),
                     aws=AwsSettings(region="us-east-1", endpoint_url=endpoint))

def busy(parsed, **_):
    # In this process the restore never finishes and the ECS deployment never settles.
    for db in parsed.get("DBInstances", []) + parsed.get("DBClusters", []):
        if any(t["Key"] == "scaler:run" for t in db.get("TagList", [])):
            db["DBInstanceStatus" if "DBInstanceStatus" in db else "Status"] = "creating"
    for service in parsed.get("services", []):
        for d in service.get("deployments", []):
            d["rolloutState"] = "IN_PROGRESS"

for service, operation in (("rds", "DescribeDBInstances"), ("rds", "DescribeDBClusters"),
                           ("ecs", "DescribeServices")):
    svc.clients.events(service, "us-east-1").register(f"after-call.{service}.{operation}", busy)
svc.start(runbook, json.loads(params), trigger=Trigger("manual", "drill", "process killed mid-run"))
"""


def started(case: Case, client: ClientFor, world: Any, kube: FakeKube) -> bool:
    """The provider has the slow step's write: a restored database exists, the service or template changed."""
    if case.runbook == "database-restore":
        return bool(database_state(client, world).restored)
    if isinstance(world, EcsWorld):
        return ecs_task_definition(client, world) == world.good
    return patches(kube) >= 1


def test_killed_mid_step_then_resumed_repeats_no_write(
        case: Case, world: Any, tmp_path: Path, moto: MotoServer, server_client: ClientFor, kube: FakeKube,
        web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = f"{web.url}/hook?token={HOOK_TOKEN}"
    monkeypatch.setenv("DRILL_HOOK", hook)  # a reference, so another process can resume the run
    params = case.params(world, web, kube) | {"webhook_url": "env:DRILL_HOOK"}
    kube.workloads[("shop", "deployments", "checkout")].settle_polls = 10**6  # the rollout does not settle yet
    state = tmp_path / "state"
    state.mkdir()
    journal, audit_file = state / "journal.db", state / "audit.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(RUNBOOKS), str(journal), str(audit_file), moto.url, case.runbook,
         json.dumps(params)],
        env=os.environ | {"DRILL_HOOK": hook}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            runs = Journal(journal).runs() if journal.exists() else []
            if runs and runs[0].step(case.slow).status == "running" and started(case, server_client, world, kube):
                break
            assert time.monotonic() < deadline, f"the child never got into {case.slow}"
            time.sleep(0.05)
        time.sleep(0.2)  # well into the wait
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    [killed] = Journal(journal).runs()
    assert killed.status == "running"
    done_before = [s.id for s in killed.steps if s.status == "succeeded"]

    kube.workloads[("shop", "deployments", "checkout")].rollout_left = 0  # the pods come up
    svc = make_service(tmp_path, endpoint_url=moto.url, clock=FakeClock())
    run = svc.resume(killed.id)
    assert run.status == "succeeded", run.error
    assert all(run.step(sid).attempts == 1 for sid in done_before)
    assert run.step(case.slow).attempts == 2
    assert effects(svc) == case.writes and patches(kube) == case.kube_patches
    assert case.state(server_client, world, kube) == case.after(world, run)
    assert len(web.hooks) == 2


# -- secrets ---------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.setup() and the CLI change process-wide logging; put back what they changed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("botocore", "boto3", "urllib3", "kubernetes", "scaler", "scaler.runbook")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_no_secret_in_journal_audit_logs_or_cli(
        case: Case, world: Any, server_service: RunbookService, kube: FakeKube, web: Web,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    logs.setup("debug", "text")  # everything at debug, as `scaler serve --log-level debug` sets it up
    caplog.set_level(logging.DEBUG)
    plan = server_service.plan(case.runbook, case.params(world, web, kube))
    run = server_service.start(case.runbook, case.params(world, web, kube), trigger=case.trigger)
    assert run.status == "succeeded", run.error
    journal = server_service.journal.path
    cli = CliRunner().invoke(app, ["--log-level", "debug", "status", run.id, "--journal", str(journal), "--json"])
    assert cli.exit_code == 0 and run.id in cli.output
    written = {
        "journal": b"".join(p.read_bytes() for p in journal.parent.glob("journal.db*")),
        "audit": server_service.audit.path.read_bytes(),
        "logs": caplog.text.encode(),
        "stderr": capsys.readouterr().err.encode(),
        "cli": cli.output.encode(),
        "records": repr([plan, run, server_service.status()]).encode(),
    }
    assert b"attempt 1" in written["logs"]  # the engine did log, and the log is searched
    assert any(h["text"] for h in web.hooks)  # the webhook (with its token) was used
    for secret in (HOOK_TOKEN, DB_PASSWORD, kube.token):
        for where, data in written.items():
            assert secret.encode() not in data, f"a secret value leaked into the {where}"


# -- what only one of them does --------------------------------------------------------------------------


def test_a_second_alert_does_not_roll_back_again(server_service: RunbookService, server_client: ClientFor,
                                                 kube: FakeKube, web: Web) -> None:
    world = build_rollout_ecs(server_client)
    first = server_service.start("deployment-rollback", rollout_params("ecs", web), trigger=ALERT)
    assert first.status == "succeeded", first.error
    # latency-rollback fires ten minutes after errors-rollback, about the same bad deploy
    again = server_service.start("deployment-rollback", rollout_params("ecs", web),
                                 trigger=Trigger("health-rule", "scaler/health-rules", "latency-rollback"))
    assert again.status == "refused" and "rolled_back" in str(again.error)
    assert ecs_task_definition(server_client, world) == world.good  # not api:0, not back to api:2
    params = rollout_params("kubernetes", web, kubeconfig=str(kube.kubeconfig))
    assert server_service.start("deployment-rollback", params, trigger=ALERT).status == "succeeded"
    assert server_service.start("deployment-rollback", params, trigger=ALERT).status == "refused"
    assert patches(kube) == 1


def test_a_restore_that_cannot_point_the_application_rolls_back_and_keeps_the_restored_database(
        server_service: RunbookService, server_client: ClientFor, web: Web) -> None:
    world = build_database(server_client, "instance")
    server_service.clients.events("route53", PRIMARY).register(
        "before-call.route53.ChangeResourceRecordSets", FailNTimes(100, "AccessDenied", 403))
    run = server_service.start("database-restore", database_params(world, web), trigger=CORRUPTED)
    assert run.status == "rolled_back"
    assert run.error and "point_app" in run.error and "AccessDenied" in run.error
    after = database_state(server_client, world)
    # Everything the application sees is as before; the restored database is kept for a person to look at.
    assert after == DbState(restored=after.restored, restored_status=("available",), source_status="available",
                            parameter=world.endpoint, cname=world.endpoint, maintenance_rules=0, flag="off")
    assert len(after.restored) == 1
    assert {s.id: s.compensation for s in run.steps if s.compensation} == {"maintenance_on": "done",
                                                                           "maintenance_flag": "done"}


def test_a_restore_with_only_a_parameter_and_no_check_url(server_service: RunbookService, server_client: ClientFor,
                                                          web: Web) -> None:
    world = build_database(server_client, "instance")
    params = {k: v for k, v in database_params(world, web).items() if k not in ("zone_id", "record_name",
                                                                                  "verify_url")}
    run = server_service.start("database-restore", params, trigger=CORRUPTED)
    assert run.status == "succeeded", run.error
    after = database_state(server_client, world)
    restored = run.step("restore").outputs or {}
    assert (after.parameter, after.cname) == (restored["endpoint"], world.endpoint)  # the CNAME is not ours here
    assert (run.step("verify").outputs or {})["probes"] == 0 and web.paths == []


def test_a_restore_refused_before_any_step_when_the_source_is_missing(
        server_service: RunbookService, server_client: ClientFor, web: Web) -> None:
    world = build_database(server_client, "instance", alb=False)
    run = server_service.start("database-restore", database_params(world, web, source="nope", listener_arn="x"),
                               trigger=CORRUPTED)
    assert run.status == "refused" and "the damaged database exists" in str(run.error)
    assert web.hooks == []


# -- the live loop starts it -----------------------------------------------------------------------------


def test_the_examples_rollback_rules_start_deployment_rollback(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    for name in ("SCALER_SLACK_ONCALL", "SCALER_SLACK_TEAM", "SCALER_SMTP_PASSWORD"):
        monkeypatch.setenv(name, "https://hooks.example.com/x")
    loaded = load_run_config(ROOT / "examples" / "run.yaml")
    section = loaded.config.runbooks
    assert section is not None
    svc = RunbookService(runbooks_dir=section.dir, journal_path=tmp_path / "j.db", audit_path=tmp_path / "a.jsonl")
    check_rules_fit(list(section.triggers), svc, "examples/run.yaml", prefix="runbooks.")  # raises on a misfit
    rules = {r.name: r for r in loaded.config.health_rules}
    for name, rule in rules.items():
        if rule.labels.get("action") != "rollback":
            continue
        assert (rule.severity, rule.for_) == ("warning", {"errors-rollback": 300.0, "latency-rollback": 600.0}[name])
        for target, platform in (("api", "ecs"), ("checkout", "kubernetes")):
            # the labels the live loop gives an event (scaler.live.controller)
            labels = {"alertname": name, "policy": "web", "target": target, "severity": rule.severity, **rule.labels}
            [trigger] = [t for t in section.triggers if t.matches(labels)]
            assert (trigger.runbook, trigger.auto, trigger.params["platform"]) == ("deployment-rollback", True,
                                                                                   platform)
            plan = svc.plan(trigger.runbook, trigger.params)
            assert [s.id for s in plan.steps] == ["before", "notify_start", "rollback", "notify_end"]
