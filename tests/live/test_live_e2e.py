"""End to end: a real Prometheus scrapes an exporter whose load the test sets; the controller reads it and
scales a real Auto Scaling group and ECS service on a moto server, up and back down, through outages.

Time is real here (1 s policy interval, 1 s scrapes): these tests poll for outcomes, never assert durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.awsrequest import AWSResponse

from scaler.live.config import load_run_config
from scaler.live.controller import build
from tests.conftest import ROOT
from tests.support.live import ChatReceiver, Exporter, LivePrometheus, wait_until
from tests.support.moto_server import moto_server

pytestmark = pytest.mark.e2e  # every test here starts real servers

POLICY = {
    "name": "web",
    "replicas": {"min": 1, "max": 8},
    "interval": "1s",
    "metrics": [
        {"name": "cpu", "kind": "utilization", "query": "max by (service) (app_cpu_percent)", "target": 50,
         "scale_up_above": 60, "scale_down_below": 40, "window": {"type": "last"}},
        {"name": "errors", "kind": "error_rate", "query": "max by (service) (app_errors_ratio)", "target": 0.01,
         "scale_up_above": 0.5, "scale_down_below": 0.5, "window": {"type": "last"}},
    ],
    "behavior": {
        "scale_up": {"stabilization": "0s", "policies": [{"type": "pods", "value": 10, "period": "1s"}]},
        "scale_down": {"stabilization": "2s", "policies": [{"type": "percent", "value": 100, "period": "1s"}]},
    },
}

RUNBOOK = {
    "name": "scale-standby",
    "description": "Bring the standby group up",
    "parameters": {"group": {"description": "standby group"}},
    "steps": [{"id": "up", "action": "asg.set_desired", "inputs": {"group": "{{ params.group }}", "desired": 3}}],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """moto server + exporter + Prometheus scraping it, shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("live")
    exporter = Exporter()
    for svc in ("web", "api"):
        exporter.set(svc, 50)
    prom = LivePrometheus(tmp / "prom", [f"127.0.0.1:{exporter.port}"]).start()
    try:
        prom.wait_for('app_cpu_percent{service="api"}')
        with moto_server() as moto:
            yield {"tmp": tmp, "exporter": exporter, "prom": prom, "moto": moto}
    finally:
        prom.kill()
        exporter.close()


def aws(world, service):
    return boto3.client(service, region_name="us-east-1", endpoint_url=world["moto"].url)


def make_targets(world, *, asg_desired=2, ecs_desired=2):
    world["moto"].reset()
    ec2, asg, ecs = aws(world, "ec2"), aws(world, "autoscaling"), aws(world, "ecs")
    lt = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12345678",
                                                                                  "InstanceType": "t3.micro"})
    for name, desired in (("web-asg", asg_desired), ("standby-asg", 0)):
        asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0 if desired == 0 else 1, MaxSize=6,
                                      DesiredCapacity=desired, AvailabilityZones=["us-east-1a"],
                                      LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]})
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="api", Description="api", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="shop")
    ecs.register_task_definition(family="api", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                 cpu="256", memory="512",
                                 containerDefinitions=[{"name": "api", "image": "api:1", "essential": True}])
    ecs.create_service(cluster="shop", serviceName="api", taskDefinition="api", desiredCount=ecs_desired,
                       launchType="FARGATE",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}})


def asg_desired(world, name="web-asg"):
    return aws(world, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"]


def ecs_desired(world):
    return aws(world, "ecs").describe_services(cluster="shop", services=["api"])["services"][0]["desiredCount"]


def write_config(world, name, *, extra=None, lease=None, state="state.db") -> Path:
    d = world["tmp"] / name
    d.mkdir(exist_ok=True)
    (d / "web.yaml").write_text(yaml.safe_dump(POLICY))
    cfg = {
        "listen": "127.0.0.1:0",
        "prometheus": {"url": world["prom"].url, "timeout": "2s"},
        "state": state if isinstance(state, dict) else {"kind": "sqlite", "path": state},
        "aws": {"region": "us-east-1", "endpoint_url": world["moto"].url},
        "audit": "decisions.jsonl",
        "ready_after": "3s",
        "retry": {"attempts": 6, "initial": "50ms", "max_delay": "200ms"},
        "policies": [{"policy": "web.yaml", "target_label": "service", "targets": [
            {"label": "web", "kind": "aws-asg", "name": "web-asg"},
            {"label": "api", "kind": "aws-ecs", "cluster": "shop", "service": "api"},
        ]}],
    }
    if lease:
        cfg["lease"] = lease
    cfg.update(extra or {})
    path = d / "scaler.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextmanager
def running(path: Path):
    """The controller `scaler run` would build, ticking on a thread until the block ends."""
    c = build(load_run_config(path))
    stop = threading.Event()
    thread = threading.Thread(target=c.loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield c
    finally:
        stop.set()
        thread.join(30)
        c.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class FailNTimes:
    """A botocore before-call hook answering the first n calls with an error, before they reach moto."""

    def __init__(self, n: int, code: str = "Throttling", status: int = 400):
        self.n, self.code, self.status, self.calls = n, code, status, 0

    def __call__(self, **kw):
        self.calls += 1
        if self.calls <= self.n:
            return (AWSResponse("http://fault", self.status, {}, None),
                    {"Error": {"Code": self.code, "Message": "injected"},
                     "ResponseMetadata": {"HTTPStatusCode": self.status}})
        return None


class Calls:
    """A before-call hook recording every AWS operation a controller makes, as IAM action names."""

    def __init__(self):
        self.actions: set[str] = set()

    def __call__(self, event_name, **kw):
        _, service, operation = event_name.split(".")  # the service id: auto-scaling, ecs, dynamodb
        self.actions.add(f"{service.replace('-', '')}:{operation}")

    def attach(self, c, *services):
        for service in services:
            c.aws.client(service).meta.events.register("before-call", self)
        return self


def iam_actions() -> set[str]:
    doc = json.loads((ROOT / "deploy/aws/controller-iam-policy.json").read_text())
    return {a for st in doc["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}


class Count:
    """An after-call hook counting the calls that succeeded (injected faults pass through after-call too)."""

    def __init__(self):
        self.n = 0

    def __call__(self, http_response, **kw):
        self.n += http_response.status_code == 200


def test_scales_an_asg_and_an_ecs_service_up_and_back_down(world):
    make_targets(world)
    world["exporter"].set("web", 50)
    world["exporter"].set("api", 50)
    chat = ChatReceiver()
    os.environ["SCALER_TEST_CHAT"] = chat.url
    rules = {
        "health_rules": [{"name": "errors-high", "policy": "web", "metric": "errors", "above": 0.1,
                          "labels": {"action": "standby"}}],
        "runbooks": {"dir": "runbooks", "journal": "journal.db", "audit": "runbooks.jsonl",
                     "triggers": [{"name": "standby", "match": {"alertname": "errors-high"}, "auto": True,
                                   "runbook": "scale-standby", "params": {"group": "standby-asg"}}]},
        "notify": [{"name": "ops", "url_env": "SCALER_TEST_CHAT", "severities": ["info", "warning", "critical"]}],
    }
    path = write_config(world, "updown", extra=rules)
    (path.parent / "runbooks").mkdir(exist_ok=True)
    (path.parent / "runbooks" / "scale-standby.yaml").write_text(yaml.safe_dump(RUNBOOK))
    try:
        with running(path) as c:
            # 50 % on 2 is inside the 40-60 band: nothing moves.
            wait_until(lambda: c.loop.groups[0].last_success, what="a first successful tick")
            assert (asg_desired(world), ecs_desired(world)) == (2, 2)
            # Load doubles: 100 % on 2 against 50 -> ceil(2 * 100 / 50) = 4 each. (The exporter's value does
            # not fall as replicas are added, so the next ticks go on up, to the ASG's MaxSize of 6.)
            world["exporter"].set("web", 100)
            world["exporter"].set("api", 100)
            wait_until(lambda: asg_desired(world) >= 4 and ecs_desired(world) >= 4, what="scale-up to 4 or more")
            # Load falls to 10 %: down to 1 (10 % of 2 -> 1), after the 2 s down-stabilization window.
            world["exporter"].set("web", 10)
            world["exporter"].set("api", 10)
            wait_until(lambda: (asg_desired(world), ecs_desired(world)) == (1, 1), what="scale-down to 1/1")
            # An error spike on web fires the health rule, whose trigger scales the standby group.
            world["exporter"].set("web", 10, errors=0.3)
            wait_until(lambda: asg_desired(world, "standby-asg") == 3, what="standby runbook")
            status, body = get(f"{c.server.url}/metrics")
            assert status == 200
            assert 'scaler_scale_writes_total{direction="up",policy="web",target="aws-asg:us-east-1/web-asg"}' \
                in body
            assert 'scaler_health_events_total{rule="errors-high",status="firing"} 1.0' in body
            assert get(f"{c.server.url}/readyz")[0] == 200
            c.notifier.flush()
        texts = chat.texts()
        assert any("scaled aws-asg:us-east-1/web-asg: 2 -> 4" in t for t in texts)
        assert any("health rule errors-high firing" in t for t in texts)
        journal = (path.parent / "runbooks.jsonl").read_text()
        assert '"kind": "health-rule"' in journal and "scale-standby" in journal
    finally:
        world["exporter"].set("web", 50)
        chat.close()


def test_prometheus_down_holds_fails_readiness_notifies_and_recovers(world):
    make_targets(world, asg_desired=4, ecs_desired=4)
    world["exporter"].set("web", 50)
    world["exporter"].set("api", 50)
    chat = ChatReceiver()
    os.environ["SCALER_TEST_CHAT_2"] = chat.url
    path = write_config(world, "outage", extra={"notify": [{"name": "ops", "url_env": "SCALER_TEST_CHAT_2"}]})
    prom = world["prom"]
    try:
        with running(path) as c:
            wait_until(lambda: get(f"{c.server.url}/readyz")[0] == 200, what="ready")
            prom.kill()
            # With Prometheus gone the load "drops" to nothing: no data must never scale down.
            world["exporter"].set("web", 5)
            world["exporter"].set("api", 5)
            wait_until(lambda: get(f"{c.server.url}/readyz")[0] == 503, what="readyz failing")
            status, why = get(f"{c.server.url}/readyz")
            assert "web" in why
            assert (asg_desired(world), ecs_desired(world)) == (4, 4)
            c.notifier.flush()
            assert any("metrics unavailable for web" in t for t in chat.texts())
            # Prometheus comes back on the same port and data; the loop resumes by itself and acts on 5 %.
            prom.start()
            wait_until(lambda: (asg_desired(world), ecs_desired(world)) == (1, 1), timeout=60,
                       what="scale-down after recovery")
            wait_until(lambda: get(f"{c.server.url}/readyz")[0] == 200, what="ready again")
    finally:
        if prom.proc is None:
            prom.start()
        world["exporter"].set("web", 50)
        world["exporter"].set("api", 50)
        chat.close()


def test_throttled_writes_land_once_and_a_permanent_error_spares_the_other_target(world):
    make_targets(world)
    world["exporter"].set("web", 100)
    world["exporter"].set("api", 100)
    world["prom"].wait_for("min(app_cpu_percent) == 100")
    c = build(load_run_config(write_config(world, "faults")), serve_http=False)
    try:
        # Hooks on the controller's own clients see exactly the calls its targets make.
        asg, ecs = c.aws.client("autoscaling"), c.aws.client("ecs")
        throttle, landed = FailNTimes(3, "Throttling"), Count()
        asg.meta.events.register("before-call.autoscaling.SetDesiredCapacity", throttle)
        asg.meta.events.register("after-call.autoscaling.SetDesiredCapacity", landed)
        denied = FailNTimes(10**6, "AccessDeniedException")
        ecs.meta.events.register("before-call.ecs.UpdateService", denied)
        report = c.loop.safe_tick(c.loop.groups[0])
        # 100 % on 2 against 50 -> 4: throttled three times, then it landed, once.
        assert asg_desired(world) == 4 and throttle.calls == 4 and landed.n == 1
        # Access denied is permanent: one call, no retry, reported; the ASG above was not held up by it.
        (web, api) = report.targets
        assert web.written and not web.error
        assert ecs_desired(world) == 2 and denied.calls == 1
        assert "AccessDenied" in api.error and not api.written
        c.loop.safe_tick(c.loop.groups[0])
        assert denied.calls == 2  # the next tick tries the ECS write again
    finally:
        c.close()


def test_two_controllers_share_a_lease_one_writes_and_a_follower_takes_over(world):
    from scaler.aws import AwsClients, AwsSettings
    from scaler.store.dynamodb import ensure_table

    make_targets(world)
    world["exporter"].set("web", 100)
    world["exporter"].set("api", 50)
    clients = AwsClients(AwsSettings(endpoint_url=world["moto"].url))
    ensure_table(clients, "scaler-state", "key")
    ensure_table(clients, "scaler-leases", "lease_id")
    shared = {"lease": {"kind": "dynamodb", "table": "scaler-leases", "name": "web", "ttl": "3s"},
              "state": {"kind": "dynamodb", "table": "scaler-state"}}
    controllers, counts, stops, threads, calls = [], [], [], [], []
    for name in ("ha-a", "ha-b"):
        c = build(load_run_config(write_config(world, name, **shared)), serve_http=False)
        calls.append(Calls().attach(c, "autoscaling", "ecs", "dynamodb"))
        landed = Count()
        c.aws.client("autoscaling").meta.events.register("after-call.autoscaling.SetDesiredCapacity", landed)
        stop = threading.Event()
        thread = threading.Thread(target=c.loop.run, args=(stop,), daemon=True)
        thread.start()
        controllers.append(c)
        counts.append(landed)
        stops.append(stop)
        threads.append(thread)
    try:
        # 100 % on 2 -> 4 (and on up while the load stays at 100 %), written by the lease holder, and only by it.
        wait_until(lambda: asg_desired(world) >= 4, what="scale-up by the leader")
        leader = next(i for i, c in enumerate(controllers) if c.keeper.leader)
        follower = 1 - leader
        assert not controllers[follower].keeper.leader
        assert counts[leader].n >= 1 and counts[follower].n == 0
        # The leader dies without releasing the lease (no clean shutdown).
        stops[leader].set()
        threads[leader].join(30)
        controllers[leader].keeper.stop(release=False)
        world["exporter"].set("web", 10)
        # The follower takes over once the lease expires and scales down to 1.
        wait_until(lambda: asg_desired(world) == 1, timeout=30, what="scale-down by the new leader")
        assert controllers[follower].keeper.leader and counts[follower].n >= 1
        # Everything the controllers called is allowed by the shipped least-privilege IAM policy.
        used = set().union(*(c.actions for c in calls))
        assert {"autoscaling:SetDesiredCapacity", "dynamodb:UpdateItem", "ecs:DescribeServices"} <= used
        assert used <= iam_actions(), used - iam_actions()
    finally:
        for stop, thread in zip(stops, threads, strict=True):
            stop.set()
            thread.join(30)
        for c in controllers:
            c.close()
        world["exporter"].set("web", 50)


def _scaler(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "scaler", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_scaler_run_serves_probes_and_stops_cleanly_on_sigterm(world):
    make_targets(world)
    world["exporter"].set("web", 50)
    world["exporter"].set("api", 50)
    path = write_config(world, "cli")
    proc = _scaler("run", str(path), "--log-format", "json")
    try:
        line = proc.stdout.readline()
        assert line.startswith("scaler run: listening on http://127.0.0.1:"), proc.stderr.read()
        url = line.split()[-1]
        assert get(f"{url}/healthz") == (200, "ok\n")
        wait_until(lambda: get(f"{url}/readyz")[0] == 200, what="ready")
        metrics = get(f"{url}/metrics")[1]
        assert 'scaler_ticks_total{outcome="ok",policy="web"}' in metrics
        assert 'scaler_replicas_current{policy="web",target="web"} 2.0' in metrics
        assert "scaler_leader 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        err = proc.stderr.read()
        logs = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
        assert any("current tick finished" in r["msg"] for r in logs), err[-2000:]
        assert all(r["level"] in ("info", "warning") for r in logs), err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_scaler_run_once_dry_run_prints_the_decisions_and_writes_nothing(world):
    make_targets(world)
    world["exporter"].set("web", 100)
    world["prom"].wait_for('app_cpu_percent{service="web"} == 100')
    proc = _scaler("run", str(write_config(world, "once")), "--once", "--dry-run")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "aws-asg:us-east-1/web-asg" in out and "METRIC_UP" in out
    assert asg_desired(world) == 2  # dry run: decided 4, wrote nothing
    # A dry run keeps its own records: the real controller's saved state and decisions are untouched.
    status = _scaler("status", str(write_config(world, "once")), "--dry-run")
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert "web (aws-asg:us-east-1/web-asg): 2 -> 4 [METRIC_UP]" in out
    status = _scaler("status", str(write_config(world, "once")))
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0 and "web: no decision saved yet" in out, out + err
    world["exporter"].set("web", 50)


def test_a_bad_config_names_every_field_and_nothing_starts(world, tmp_path):
    path = write_config(world, "bad", extra={"workers": 0})
    cfg = yaml.safe_load(path.read_text())
    cfg["policies"][0]["targets"][0] = {"label": "web", "kind": "aws-asg"}  # no name
    cfg["prometheus"]["timout"] = "2s"
    path.write_text(yaml.safe_dump(cfg))
    proc = _scaler("run", str(path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert str(path) in err and "Traceback" not in err
    for field in ("workers", "policies[0].targets[0].name", "prometheus.timout"):
        assert field in err, err
