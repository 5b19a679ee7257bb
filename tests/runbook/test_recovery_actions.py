"""The restore and rollback actions against in-process moto and the fake API server: effect, idempotence on a
re-run (as after a crash), refusals, waiting on the run's clock, outputs for undo."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError
from scaler.runbook.actions import REGISTRY
from scaler.runbook.actions.kube import MARK, undo_patch
from scaler.runbook.errors import StepTimeout
from tests.runbook.helpers import (
    PRIMARY,
    ClientFor,
    DbWorld,
    EcsWorld,
    FailNTimes,
    Web,
    build_database,
    build_rollout_ecs,
    database_state,
    ecs_task_definition,
)
from tests.runbook.test_runbook_actions import Harness
from tests.support.fake_kube import FakeKube, path_of, replicasets_path

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = path_of("deployment", "checkout", namespace="shop")


@pytest.fixture
def h(tmp_path: Path, clock: FakeClock) -> Harness:
    return Harness(tmp_path, clock)


@pytest.fixture
def db(mocked: ClientFor) -> DbWorld:
    return build_database(mocked, "instance", alb=False)


@pytest.fixture
def aurora(mocked: ClientFor) -> DbWorld:
    return build_database(mocked, "cluster", alb=False)


@pytest.fixture
def api(mocked: ClientFor) -> EcsWorld:
    return build_rollout_ecs(mocked)


class Calls:
    """A before-call hook counting the calls of each operation it is registered for."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        self.seen[event_name.rsplit(".", 1)[-1]] += 1


def counting(h: Harness, service: str) -> Calls:
    calls = Calls()
    h.clients.events(service).register(f"before-call.{service}", calls)
    return calls


def rewrite(h: Harness, service: str, operation: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Change what the provider answers to `operation` before the action sees it (an after-call hook)."""
    h.clients.events(service).register(
        f"after-call.{service}.{operation}", lambda parsed, **_: change(parsed)
    )


# -- rds.restore_point_in_time ---------------------------------------------------------------------------


def test_restore_makes_a_new_instance_once_and_never_touches_the_source(
    h: Harness, mocked: ClientFor, db: DbWorld
) -> None:
    run = h.new_run()
    calls = counting(h, "rds")

    first = h.run("rds.restore_point_in_time", run, source="prod-db", interval=5)
    again = h.run("rds.restore_point_in_time", run, source="prod-db", interval=5)  # a resume re-runs the step

    assert again == first
    assert calls.seen["RestoreDBInstanceToPointInTime"] == 1
    target = first["target"]
    assert target.startswith("prod-db-r") and len(target) == len("prod-db-r") + 8
    assert (first["status"], first["latest"], first["engine"]) == ("available", True, "postgres")
    assert first["endpoint"].startswith(f"{target}.") and first["port"] == 5432
    made = mocked("rds", PRIMARY).describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]
    assert {t["Key"]: t["Value"] for t in made["TagList"]} == {"scaler:run": run, "scaler:restored-from": "prod-db"}
    assert made["DBInstanceClass"] == "db.t3.micro"  # sized like the source
    state = database_state(mocked, db)
    assert (state.restored, state.source_status) == ((target,), "available")
    assert state.parameter == db.endpoint  # restoring changes nothing the application uses
    assert not any(op in calls.seen for op in ("ModifyDBInstance", "DeleteDBInstance", "RebootDBInstance"))


def test_another_run_restores_to_another_identifier(h: Harness, mocked: ClientFor, db: DbWorld) -> None:
    one = h.run("rds.restore_point_in_time", h.new_run(), source="prod-db")["target"]
    two = h.run("rds.restore_point_in_time", h.new_run(), source="prod-db")["target"]
    assert one != two
    assert database_state(mocked, db).restored == tuple(sorted((one, two)))


def test_restore_to_a_given_time_and_class(h: Harness, mocked: ClientFor, db: DbWorld) -> None:
    out = h.run("rds.restore_point_in_time", h.new_run(), source="prod-db", target="prod-db-before-incident",
                restore_time="2020-01-01T10:00:00+00:00", instance_class="db.t3.small")
    assert (out["target"], out["restore_time"], out["latest"]) == (
        "prod-db-before-incident", "2020-01-01T10:00:00+00:00", False)
    made = mocked("rds", PRIMARY).describe_db_instances(DBInstanceIdentifier="prod-db-before-incident")
    assert made["DBInstances"][0]["DBInstanceClass"] == "db.t3.small"


def test_restore_of_an_aurora_cluster_adds_a_writer_like_the_sources(
    h: Harness, mocked: ClientFor, aurora: DbWorld
) -> None:
    run = h.new_run()
    calls = counting(h, "rds")

    first = h.run("rds.restore_point_in_time", run, kind="cluster", source="prod-aurora")
    again = h.run("rds.restore_point_in_time", run, kind="cluster", source="prod-aurora")

    assert again == first
    assert (calls.seen["RestoreDBClusterToPointInTime"], calls.seen["CreateDBInstance"]) == (1, 1)
    target = first["target"]
    assert first["instance"] == f"{target}-1"
    cluster = mocked("rds", PRIMARY).describe_db_clusters(DBClusterIdentifier=target)["DBClusters"][0]
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == [f"{target}-1"]
    assert first["endpoint"] == cluster["Endpoint"]
    writer = mocked("rds", PRIMARY).describe_db_instances(DBInstanceIdentifier=f"{target}-1")["DBInstances"][0]
    assert writer["DBInstanceClass"] == "db.r6g.large"
    assert database_state(mocked, aurora).source_status == "available"


REFUSED = [
    ("after-latest", {"restore_time": "2999-01-01T00:00:00Z"}, "InvalidRestoreTime"),
    ("no-source", {"source": "nope"}, "NotFound"),
    ("target-is-someone-elses", {"target": "prod-db"}, "SameIdentifier"),
]


@pytest.mark.parametrize(("over", "code"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_restore_refusals_make_no_call(h: Harness, db: DbWorld, over: dict[str, str], code: str) -> None:
    calls = counting(h, "rds")
    with pytest.raises(PermanentError) as caught:
        h.run("rds.restore_point_in_time", h.new_run(), **({"source": "prod-db"} | over))
    assert caught.value.code == code
    assert calls.seen["RestoreDBInstanceToPointInTime"] == 0


def test_restore_never_adopts_a_database_it_did_not_make(h: Harness, mocked: ClientFor, db: DbWorld) -> None:
    mocked("rds", PRIMARY).restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier="prod-db", TargetDBInstanceIdentifier="prod-db-copy", UseLatestRestorableTime=True)
    with pytest.raises(PermanentError) as caught:
        h.run("rds.restore_point_in_time", h.new_run(), source="prod-db", target="prod-db-copy")
    assert caught.value.code == "TargetExists"


def test_without_backups_there_is_no_point_in_time(h: Harness, mocked: ClientFor) -> None:
    mocked("rds", PRIMARY).create_db_instance(DBInstanceIdentifier="scratch", DBInstanceClass="db.t3.micro",
                                              Engine="postgres", MasterUsername="app", MasterUserPassword="x" * 12,
                                              AllocatedStorage=20, BackupRetentionPeriod=0)
    with pytest.raises(PermanentError, match="no automated backups"):
        h.run("rds.restore_point_in_time", h.new_run(), source="scratch")


@pytest.mark.parametrize("when", ["yesterday", "2025-03-01T11:55:00"], ids=["not-a-time", "no-zone"])
def test_a_restore_time_must_be_latest_or_a_time_with_a_zone(when: str) -> None:
    with pytest.raises(ValueError, match="latest|zone"):
        REGISTRY["rds.restore_point_in_time"].inputs.model_validate({"source": "prod-db", "restore_time": when})


def test_restore_waits_on_the_clock_until_available(h: Harness, db: DbWorld, clock: FakeClock) -> None:
    looks = {"n": 0}

    def slow(parsed: dict[str, Any]) -> None:
        for found in parsed.get("DBInstances", []):
            if found["DBInstanceIdentifier"] != "prod-db" and looks["n"] < 3:
                looks["n"] += 1
                found["DBInstanceStatus"] = "creating"

    rewrite(h, "rds", "DescribeDBInstances", slow)
    start = clock.t
    out = h.run("rds.restore_point_in_time", h.new_run(), source="prod-db", interval=30)
    # t+0 exists? no -> restore; t+0 creating, t+30 creating, t+60 creating, t+90 available
    assert out["status"] == "available" and clock.t - start == 90


@pytest.mark.parametrize(("status", "error", "message"), [
    ("incompatible-restore", PermanentError, "is incompatible-restore"),
    ("creating", StepTimeout, "still creating when the step's time ran out"),
], ids=["dead-status", "too-slow"])
def test_restore_that_does_not_come_up(h: Harness, db: DbWorld, status: str, error: type, message: str) -> None:
    def stuck(parsed: dict[str, Any]) -> None:
        for found in parsed.get("DBInstances", []):
            if found["DBInstanceIdentifier"] != "prod-db":
                found["DBInstanceStatus"] = status

    rewrite(h, "rds", "DescribeDBInstances", stuck)
    with pytest.raises(error, match=message):
        h.run("rds.restore_point_in_time", h.new_run(), source="prod-db", interval=60, timeout=600)


def test_describe_and_verify(h: Harness, db: DbWorld, web: Web) -> None:
    run = h.new_run()
    restored = h.run("rds.restore_point_in_time", run, source="prod-db")
    seen = h.run("rds.describe", run, identifier=restored["target"])
    assert seen == {"exists": True, "status": "available", "endpoint": restored["endpoint"], "port": 5432,
                    "engine": "postgres", "restored_from": "prod-db"}
    assert h.run("rds.describe", run, identifier="nope")["exists"] is False

    web.health = [503]  # a bad answer resets the count: 503, 200, 200 -> 3 probes for 2 in a row
    checked = h.run("rds.verify", run, identifier=restored["target"], successes=2, interval=1,
                    url=f"{web.url}/verify?host={{endpoint}}&port={{port}}&db={{identifier}}")
    assert (checked["probes"], checked["last_status"]) == (3, 200)
    assert web.paths[-1] == f"/verify?host={restored['endpoint']}&port=5432&db={restored['target']}"
    assert h.run("rds.verify", run, identifier=restored["target"])["probes"] == 0  # no URL: RDS status alone


# -- rds.point_app / rds.point_app_back ------------------------------------------------------------------


def test_point_app_sets_parameter_and_cname_once_and_points_back(h: Harness, mocked: ClientFor, db: DbWorld) -> None:
    run = h.new_run()
    new = "prod-db-restored.aaaaaaaaaa.us-east-1.rds.amazonaws.com"
    args = {"endpoint": new, "parameter": db.parameter, "zone_id": db.zone_id, "record_name": "DB.example.com"}
    r53 = counting(h, "route53")

    first = h.run("rds.point_app", run, **args)
    again = h.run("rds.point_app", run, **args)

    assert (first["changed"], again["changed"]) == (True, False)
    assert again["previous"] == first["previous"] == {
        "parameter": {"name": db.parameter, "value": db.endpoint},
        "record": {"zone_id": db.zone_id, "name": "db.example.com.", "value": db.endpoint, "ttl": 300},
    }
    assert r53.seen["ChangeResourceRecordSets"] == 1
    state = database_state(mocked, db)
    assert (state.parameter, state.cname) == (new, new)

    back = h.run("rds.point_app_back", run, previous=first["previous"])
    assert back["changed"] is True
    state = database_state(mocked, db)
    assert (state.parameter, state.cname) == (db.endpoint, db.endpoint)
    assert h.run("rds.point_app_back", run, previous=first["previous"])["changed"] is False


def test_pointing_back_removes_what_was_not_there(h: Harness, mocked: ClientFor, db: DbWorld) -> None:
    run = h.new_run()
    out = h.run("rds.point_app", run, endpoint="new.example.com", parameter="/app/other/host", zone_id=db.zone_id,
                record_name="db2.example.com")
    assert out["previous"]["parameter"]["value"] is None and out["previous"]["record"]["value"] is None
    h.run("rds.point_app_back", run, previous=out["previous"])
    with pytest.raises(mocked("ssm", PRIMARY).exceptions.ParameterNotFound):
        mocked("ssm", PRIMARY).get_parameter(Name="/app/other/host")
    sets = mocked("route53", PRIMARY).list_resource_record_sets(HostedZoneId=db.zone_id)["ResourceRecordSets"]
    assert "db2.example.com." not in {r["Name"] for r in sets}


@pytest.mark.parametrize(("args", "message"), [
    ({}, "nothing to point"),
    ({"zone_id": "Z1"}, "go together"),
], ids=["nowhere", "zone-without-record"])
def test_point_app_needs_somewhere_to_point(args: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        REGISTRY["rds.point_app"].inputs.model_validate({"endpoint": "db.example.com"} | args)


# -- ecs.rollback ----------------------------------------------------------------------------------------


def test_ecs_rollback_goes_to_the_previous_revision_once_and_marks_it(
    h: Harness, mocked: ClientFor, api: EcsWorld
) -> None:
    run = h.new_run()
    calls = counting(h, "ecs")

    first = h.run("ecs.rollback", run, cluster="shop", service="api")
    again = h.run("ecs.rollback", run, cluster="shop", service="api")

    assert (first["previous"], first["task_definition"], first["changed"]) == (api.bad, api.good, True)
    assert (again["changed"], again["rollout_state"]) == (False, "COMPLETED")
    assert first["summary"] == "ecs shop/api: api:2 -> api:1"
    assert (calls.seen["UpdateService"], calls.seen["TagResource"]) == (1, 1)
    assert ecs_task_definition(mocked, api) == api.good
    status = h.run("deploy.status", run, platform="ecs", cluster="shop", service="api")
    assert (status["current"], status["rolled_back"]) == (api.good, True)


def test_ecs_rollback_during_a_deployment_goes_to_the_one_still_running(
    h: Harness, mocked: ClientFor, api: EcsWorld
) -> None:
    ecs = mocked("ecs", PRIMARY)
    three = ecs.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "shop/api:3"}],
                                         requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
                                         memory="512")["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="shop", service="api", taskDefinition=three)

    def rolling(parsed: dict[str, Any]) -> None:
        # api:3 is being rolled out while api:1 still serves (api:2 never finished): go back to api:1, not api:2.
        for svc in parsed.get("services", []):
            svc["deployments"] = [
                {"status": "PRIMARY", "taskDefinition": svc["taskDefinition"], "rolloutState": "COMPLETED"},
                {"status": "ACTIVE", "taskDefinition": api.good, "rolloutState": "COMPLETED"},
            ]

    rewrite(h, "ecs", "DescribeServices", rolling)
    out = h.run("ecs.rollback", h.new_run(), cluster="shop", service="api")
    assert (out["previous"], out["task_definition"]) == (three, api.good)


def test_ecs_rollback_waits_for_the_rollout_and_fails_with_it(
    h: Harness, api: EcsWorld, clock: FakeClock
) -> None:
    states = ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]

    def progress(parsed: dict[str, Any]) -> None:
        for svc in parsed.get("services", []):
            svc["deployments"][0]["rolloutState"] = states.pop(0) if len(states) > 1 else states[0]

    rewrite(h, "ecs", "DescribeServices", progress)
    start = clock.t
    out = h.run("ecs.rollback", h.new_run(), cluster="shop", service="api", interval=10)
    # the first look (before rolling back) saw IN_PROGRESS; then IN_PROGRESS at t+0, COMPLETED at t+10
    assert (out["rollout_state"], clock.t - start) == ("COMPLETED", 10)

    states[:] = ["FAILED"]
    with pytest.raises(PermanentError, match="rollout failed") as caught:
        h.run("ecs.rollback", h.new_run(), cluster="shop", service="api", to="api:2")
    assert caught.value.code == "RolloutFailed"


def test_ecs_rollback_refusals(h: Harness, mocked: ClientFor, api: EcsWorld) -> None:
    h.run("ecs.rollback", h.new_run(), cluster="shop", service="api", to="api:1")
    with pytest.raises(PermanentError, match="no ACTIVE revision of api before 1"):
        h.run("ecs.rollback", h.new_run(), cluster="shop", service="api")  # api:1 is the first
    with pytest.raises(PermanentError, match="not found"):
        h.run("ecs.rollback", h.new_run(), cluster="shop", service="nope")


def test_ecs_rollback_leaves_a_service_someone_else_changed(h: Harness, mocked: ClientFor, api: EcsWorld) -> None:
    run = h.new_run()
    h.run("ecs.rollback", run, cluster="shop", service="api")
    ecs = mocked("ecs", PRIMARY)
    three = ecs.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "shop/api:3"}],
                                         requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
                                         memory="512")["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="shop", service="api", taskDefinition=three)  # a person deploys a fix
    with pytest.raises(PermanentError) as caught:
        h.run("ecs.rollback", run, cluster="shop", service="api")  # the same step again, as after a crash
    assert caught.value.code == "ChangedMeanwhile"
    assert ecs_task_definition(mocked, api) == three


# -- kubernetes.rollout_undo -----------------------------------------------------------------------------


def undo(h: Harness, kube: FakeKube, run: str, **more: Any) -> dict[str, Any]:
    return h.run("kubernetes.rollout_undo", run, namespace="shop", name="checkout",
                 kubeconfig=str(kube.kubeconfig), interval=5, **more)


def test_undo_patches_the_previous_template_back_once_as_kubectl_does(
    h: Harness, kube: FakeKube, clock: FakeClock
) -> None:
    run = h.new_run()
    kube.workloads[("shop", "deployments", "checkout")].settle_polls = 2
    [one, two] = kube.owned("checkout", namespace="shop")
    start = clock.t

    first = undo(h, kube, run)
    again = undo(h, kube, run)

    patches = [r for r in kube.requests_to(CHECKOUT) if r.method == "PATCH"]
    assert len(patches) == 1
    assert patches[0].headers["content-type"] == "application/json-patch+json"
    ops = patches[0].body
    assert [(op["op"], op["path"]) for op in ops] == [("replace", "/spec/template"),
                                                      ("replace", "/metadata/annotations")]
    assert "pod-template-hash" not in ops[0]["value"]["metadata"]["labels"]
    assert ops[0]["value"]["spec"]["containers"][0]["image"] == "shop/checkout:1"
    assert ops[1]["value"][MARK] == one.name
    # revision 1's ReplicaSet is current again and takes revision 3; the bad one keeps 2
    assert [(rs.name, rs.revision) for rs in kube.owned("checkout", namespace="shop")] == [(one.name, 3),
                                                                                             (two.name, 2)]
    assert (first["previous_revision"], first["to_revision"], first["revision"]) == (2, 1, 3)
    assert first["images"] == ["shop/checkout:1"] and first["changed"] is True
    assert (again["changed"], again["revision"]) == (False, 3)
    # two looks showed the rollout in progress, 5 s apart each: t+0 (patch), t+5, t+10 done
    assert clock.t - start == 10 and first["status"] == "successfully rolled out"


def test_undo_to_a_revision_and_the_refusals(h: Harness, kube: FakeKube) -> None:
    kube.deploy("checkout", namespace="shop", image="shop/checkout:3")  # revision 3
    assert undo(h, kube, h.new_run(), to_revision=1)["images"] == ["shop/checkout:1"]
    with pytest.raises(PermanentError, match="no revision 9") as caught:
        undo(h, kube, h.new_run(), to_revision=9)
    assert caught.value.code == "RevisionNotFound"
    kube.workloads[("shop", "deployments", "checkout")].paused = True
    with pytest.raises(PermanentError, match="paused"):
        undo(h, kube, h.new_run())


def test_undo_without_history_and_a_missing_deployment(h: Harness, kube: FakeKube) -> None:
    kube.add("deployment", "fresh", namespace="shop")
    with pytest.raises(PermanentError, match="no earlier revision"):
        h.run("kubernetes.rollout_undo", h.new_run(), namespace="shop", name="fresh", kubeconfig=str(kube.kubeconfig))
    with pytest.raises(PermanentError) as caught:
        h.run("kubernetes.rollout_undo", h.new_run(), namespace="shop", name="gone", kubeconfig=str(kube.kubeconfig))
    assert caught.value.code == "NotFound"


def test_undo_fails_when_the_rollout_passes_its_deadline(h: Harness, kube: FakeKube) -> None:
    kube.workloads[("shop", "deployments", "checkout")].stuck = True
    with pytest.raises(PermanentError, match="progress deadline") as caught:
        undo(h, kube, h.new_run())
    assert caught.value.code == "ProgressDeadlineExceeded"


def test_undo_times_out_naming_what_it_waited_for(h: Harness, kube: FakeKube) -> None:
    kube.workloads[("shop", "deployments", "checkout")].settle_polls = 10**6
    with pytest.raises(StepTimeout, match="0 out of 3 new replicas have been updated"):
        h.run("kubernetes.rollout_undo", h.new_run(), namespace="shop", name="checkout",
              kubeconfig=str(kube.kubeconfig), interval=5, timeout=30)


def test_a_request_that_gets_no_answer_times_out_within_the_steps_time_left(h: Harness, kube: FakeKube) -> None:
    """A Kubernetes API that takes the request and stalls: each try waits the step's time left (2 s here, the
    run's clock standing still), not the action's 10 s request timeout; three tries, then a transient error."""
    kube.stall(CHECKOUT, 30.0, times=3)
    started = time.monotonic()
    with pytest.raises(TransientError):
        h.run("kubernetes.rollout_undo", h.new_run(), namespace="shop", name="checkout",
              kubeconfig=str(kube.kubeconfig), timeout=2.0)
    took = time.monotonic() - started
    assert len(kube.requests_to(CHECKOUT)) == 3
    # each try at most the 2 s left (less the retry delays the run's clock has moved on by), at least 1 s; with
    # the request timeout alone, 3 x 10 s
    assert 3 * 1.0 <= took < 3 * 2.0 + 4.0, f"{took:.1f} s"


def test_each_request_is_retried_on_429_and_5xx(h: Harness, kube: FakeKube) -> None:
    # the run's call_retry (here 3 tries) governs Kubernetes requests as it does AWS calls
    kube.fail(CHECKOUT, 429, times=1)
    kube.fail(CHECKOUT, 503, times=1)
    kube.fail(replicasets_path("shop"), 429, times=2)
    run = h.new_run()
    out = undo(h, kube, run)
    assert out["changed"] is True
    assert len([r for r in kube.requests_to(CHECKOUT) if r.method == "PATCH"]) == 1
    # every request is in the audit trail as AWS calls are: each try, the refusals with their code
    calls = [json.loads(line) for line in h.env.audit.path.read_text().splitlines()]
    calls = [c for c in calls if c.get("event") == "call" and c.get("run_id") == run]
    assert calls and {c["service"] for c in calls} == {"kubernetes"} and all(c["region"] is None for c in calls)
    gets = [c for c in calls if c["operation"] == "get deployment"]
    assert [c["attempt"] for c in gets[:3]] == [1, 2, 3]
    assert [c["error"]["code"] for c in gets[:2]] == ["TooManyRequests", "ServiceUnavailable"]
    assert all(c["error"]["transient"] for c in gets[:2])
    assert set(gets[2]["result"]) == {"name", "resourceVersion", "generation"}
    assert gets[2]["result"]["name"] == "checkout"
    assert gets[2]["args"] == {"namespace": "shop", "name": "checkout"}
    (listed,) = [c for c in calls if c["operation"] == "list replicasets" and "result" in c]
    assert listed["result"]["items"] == 2
    (patched,) = [c for c in calls if c["operation"] == "patch deployment"]
    assert patched["args"] == {"namespace": "shop", "name": "checkout"} and "body" not in json.dumps(patched["args"])


def test_a_second_rollback_is_seen_as_one(h: Harness, kube: FakeKube) -> None:
    args = {"platform": "kubernetes", "namespace": "shop", "name": "checkout", "kubeconfig": str(kube.kubeconfig)}
    assert h.run("deploy.status", h.new_run(), **args)["rolled_back"] is False
    undo(h, kube, h.new_run())
    after = h.run("deploy.status", h.new_run(), **args)
    assert (after["rolled_back"], after["current"], after["images"]) == (True, 3, ["shop/checkout:1"])
    kube.deploy("checkout", namespace="shop", image="shop/checkout:4")  # a new version is no rollback
    assert h.run("deploy.status", h.new_run(), **args)["rolled_back"] is False


def test_the_patch_keeps_the_deployments_own_annotations() -> None:
    deployment = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2", "team": "shop",
                                               "kubectl.kubernetes.io/last-applied-configuration": "{}"}}}
    target = {"metadata": {"name": "checkout-abc", "annotations": {"deployment.kubernetes.io/revision": "1",
                                                                   "kubernetes.io/change-cause": "v1"}},
              "spec": {"template": {"metadata": {"labels": {"app": "checkout", "pod-template-hash": "abc"}}}}}
    _, annotations = undo_patch(deployment, target)
    # kubectl keeps revision and last-applied from the Deployment and takes the rest from the ReplicaSet
    assert annotations["value"] == {"deployment.kubernetes.io/revision": "2",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                    "kubernetes.io/change-cause": "v1", MARK: "checkout-abc"}


# -- deploy.* --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("inputs", "message"), [
    ({"platform": "ecs", "cluster": "shop"}, "ecs needs cluster and service"),
    ({"platform": "kubernetes"}, "kubernetes needs name"),
    ({"platform": "kubernetes", "name": "web", "to": "api:1"}, "revision number"),
], ids=["ecs-no-service", "kubernetes-no-name", "kubernetes-to-not-a-number"])
def test_deploy_rollback_inputs_name_what_is_missing(inputs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        REGISTRY["deploy.rollback"].inputs.model_validate(inputs)


def test_deploy_rollback_goes_by_platform(h: Harness, mocked: ClientFor, api: EcsWorld, kube: FakeKube) -> None:
    ecs = h.run("deploy.rollback", h.new_run(), platform="ecs", cluster="shop", service="api", interval=1)
    k8s = h.run("deploy.rollback", h.new_run(), platform="kubernetes", namespace="shop", name="checkout",
                kubeconfig=str(kube.kubeconfig), to="1", interval=1)
    assert (ecs["platform"], ecs["task_definition"]) == ("ecs", api.good)
    assert (k8s["platform"], k8s["to_revision"], k8s["images"]) == ("kubernetes", 1, ["shop/checkout:1"])


def test_throttled_ecs_calls_are_retried(h: Harness, mocked: ClientFor, api: EcsWorld) -> None:
    h.clients.events("ecs").register("before-call.ecs.UpdateService", FailNTimes(2))
    assert h.run("ecs.rollback", h.new_run(), cluster="shop", service="api")["changed"] is True
    assert ecs_task_definition(mocked, api) == api.good


def test_a_rollback_needs_only_what_the_shipped_rollback_role_grants(h: Harness, kube: FakeKube) -> None:
    """Every request the rollback made (read, list, patch, and the rollout polls) is allowed by
    deploy/kubernetes/rbac.yaml's scaler-rollback role; and the controller's own role grants none of the writes."""
    kube.requests.clear()
    undo(h, kube, h.new_run())
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "rbac.yaml").read_text()))
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}

    def grants(name: str) -> set[tuple[str, str]]:
        return {(res, v) for rule in roles[name]["rules"] for res in rule["resources"] for v in rule["verbs"]}

    used = set()
    for r in kube.requests:  # /apis/apps/v1/namespaces/shop/deployments/checkout, .../namespaces/shop/replicasets
        parts = r.path.strip("/").split("/")
        named = len(parts) > 6
        verb = {"GET": "get" if named else "list", "PATCH": "patch", "PUT": "update"}[r.method]
        used.add((parts[5], verb))
    assert {("deployments", "get"), ("deployments", "patch"), ("replicasets", "list")} <= used
    assert used <= grants("scaler-rollback"), used - grants("scaler-rollback")
    assert not used & {g for g in grants("scaler") if g[1] in ("patch", "update")}
