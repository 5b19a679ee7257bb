"""Test helpers for runbooks: an AWS world to fail over, a local webhook/health server, fault injection."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from scaler.aws import AwsSettings
from scaler.clock import Clock, FakeClock
from scaler.runbook.service import RunbookService

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
PRIMARY, SECONDARY = "us-east-1", "us-west-2"
ClientFor = Callable[[str, str], Any]  # (service, region) -> boto3 client


ALL_PARTS = frozenset({"dns", "alb", "standby", "flag", "secrets", "ecs"})


@dataclass(frozen=True)
class World:
    """The resources a region failover touches, as created by build_world (empty where not built)."""

    zone_id: str = ""
    record: str = "app.example.com"
    listener_arn: str = ""
    other_rule_arn: str = ""
    asg: str = "standby"
    flag: str = "/scaler/maintenance"
    secrets: tuple[str, ...] = ("prod/db", "prod/api")
    ecs_cluster: str = "standby"
    ecs_service: str = "web"


def build_world(client: ClientFor, parts: frozenset[str] = ALL_PARTS) -> World:
    """dns: PRIMARY 'east' / SECONDARY 'west' records; alb: a listener with one rule at priority 1;
    standby: an ASG at 0 of 0..10; flag: the maintenance flag 'off'; secrets: two secrets; ecs: a
    service at 1 task. Unit tests build only the parts they touch (EC2 setup is the slow part)."""
    world = World()
    if "dns" in parts:
        world = replace(world, zone_id=build_dns(client))
    if "alb" in parts:
        listener, other = build_alb(client)
        world = replace(world, listener_arn=listener, other_rule_arn=other)
    if "standby" in parts:
        client("ec2", SECONDARY).create_launch_template(
            LaunchTemplateName="standby",
            LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
        )
        client("autoscaling", SECONDARY).create_auto_scaling_group(
            AutoScalingGroupName="standby",
            LaunchTemplate={"LaunchTemplateName": "standby"},
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=0,
            AvailabilityZones=[f"{SECONDARY}a"],
        )
    if "flag" in parts:
        client("ssm", PRIMARY).put_parameter(Name="/scaler/maintenance", Value="off", Type="String")
    if "secrets" in parts:
        sm = client("secretsmanager", PRIMARY)
        sm.create_secret(Name="prod/db", SecretString="initial-db-password")
        sm.create_secret(Name="prod/api", SecretString="initial-api-key")
    if "ecs" in parts:
        build_ecs(client)
    return world


def build_dns(client: ClientFor) -> str:
    r53 = client("route53", PRIMARY)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="world")["HostedZone"]["Id"]
    hc = r53.create_health_check(
        CallerReference="hc",
        HealthCheckConfig={
            "Type": "HTTP",
            "IPAddress": "10.0.0.1",
            "Port": 80,
            "ResourcePath": "/healthz",
            "RequestInterval": 30,
            "FailureThreshold": 3,
        },
    )["HealthCheck"]["Id"]

    def record(sid: str, role: str, ip: str, check: str | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "Name": "app.example.com.",
            "Type": "A",
            "TTL": 60,
            "SetIdentifier": sid,
            "Failover": role,
            "ResourceRecords": [{"Value": ip}],
        }
        if check:
            rec["HealthCheckId"] = check
        return {"Action": "UPSERT", "ResourceRecordSet": rec}

    r53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [record("east", "PRIMARY", "10.0.0.1", hc), record("west", "SECONDARY", "10.1.0.1")]
        },
    )
    return zone


def build_alb(client: ClientFor) -> tuple[str, str]:
    """(listener ARN, ARN of the /api/* rule at priority 1)."""
    ec2 = client("ec2", PRIMARY)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{PRIMARY}{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    elb = client("elbv2", PRIMARY)
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, SecurityGroups=[sg])["LoadBalancers"][0]
    tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    listener_arn = listener["Listeners"][0]["ListenerArn"]
    other = elb.create_rule(
        ListenerArn=listener_arn,
        Priority=1,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    return listener_arn, other["Rules"][0]["RuleArn"]


def build_ecs(client: ClientFor) -> None:
    ec2w = client("ec2", SECONDARY)
    vpcw = ec2w.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2w.create_subnet(VpcId=vpcw, CidrBlock="10.1.1.0/24", AvailabilityZone=f"{SECONDARY}a")
    sg = ec2w.create_security_group(GroupName="svc", Description="svc", VpcId=vpcw)["GroupId"]
    ecs = client("ecs", SECONDARY)
    ecs.create_cluster(clusterName="standby")
    ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    # moto needs the subnet to exist and securityGroups to be given (without them it answers HTTP 500).
    ecs.create_service(
        cluster="standby",
        serviceName="web",
        taskDefinition="web",
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet["Subnet"]["SubnetId"]], "securityGroups": [sg]}
        },
    )


@dataclass(frozen=True)
class Snapshot:
    """What a failover changes, read back from the providers."""

    roles: dict[str, str]  # set identifier -> PRIMARY/SECONDARY
    maintenance_rules: int
    rule_priorities: tuple[str, ...]
    flag: str | None
    desired: int


def flag_value(client: ClientFor, world: World) -> str | None:
    try:
        return client("ssm", PRIMARY).get_parameter(Name=world.flag)["Parameter"]["Value"]
    except client("ssm", PRIMARY).exceptions.ParameterNotFound:
        return None


def snapshot(client: ClientFor, world: World) -> Snapshot:
    sets = client("route53", PRIMARY).list_resource_record_sets(HostedZoneId=world.zone_id)[
        "ResourceRecordSets"
    ]
    roles = {r["SetIdentifier"]: r["Failover"] for r in sets if r.get("SetIdentifier")}
    rules = client("elbv2", PRIMARY).describe_rules(ListenerArn=world.listener_arn)["Rules"]
    fixed = [r for r in rules if r["Actions"][0]["Type"] == "fixed-response"]
    flag = flag_value(client, world)
    group = client("autoscaling", SECONDARY).describe_auto_scaling_groups(AutoScalingGroupNames=[world.asg])
    return Snapshot(
        roles=roles,
        maintenance_rules=len(fixed),
        rule_priorities=tuple(sorted(r["Priority"] for r in rules)),
        flag=flag,
        desired=group["AutoScalingGroups"][0]["DesiredCapacity"],
    )


def current_secret(client: ClientFor, secret_id: str) -> tuple[str, str]:
    """(version id, value) of AWSCURRENT, read by stage (a bare read returns a stale version in moto)."""
    got = client("secretsmanager", PRIMARY).get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    return got["VersionId"], got["SecretString"]


@dataclass
class Web:
    """A local HTTP server: POST /hook records webhook bodies; GET /health answers from `health`."""

    url: str = ""
    hooks: list[dict[str, Any]] = field(default_factory=list)
    hook_headers: list[dict[str, str]] = field(default_factory=list)
    health: list[int] = field(default_factory=list)  # statuses to answer in turn; then 200
    health_probes: int = 0
    hook_status: list[int] = field(default_factory=list)  # statuses for POST /hook in turn; then 200
    bearer: list[str] = field(default_factory=list)  # Authorization values seen on /auth
    auth_status: list[int] = field(default_factory=list)  # statuses for GET /auth in turn; then 200
    paths: list[str] = field(default_factory=list)  # every GET's path and query, in turn
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def answer(self, status: int, body: bytes = b"ok") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                size = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(size)
                with web.lock:
                    status = web.hook_status.pop(0) if web.hook_status else 200
                    if status == 200:
                        web.hooks.append(json.loads(body))
                        web.hook_headers.append(dict(self.headers))
                self.answer(status)

            def do_GET(self) -> None:  # noqa: N802
                with web.lock:
                    web.paths.append(self.path)
                    if self.path.startswith("/auth"):
                        web.bearer.append(self.headers.get("Authorization", ""))
                        status = web.auth_status.pop(0) if web.auth_status else 200
                    else:
                        web.health_probes += 1
                        status = web.health.pop(0) if web.health else 200
                self.answer(status)

        return Handler


@contextmanager
def web_server() -> Iterator[Web]:
    web = Web()
    server = ThreadingHTTPServer(("127.0.0.1", 0), web.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    web.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield web
    finally:
        server.shutdown()
        server.server_close()


class FailNTimes:
    """A before-call hook answering the first `n` calls with an error code; botocore retries never see it."""

    def __init__(self, n: int, code: str = "ThrottlingException", status: int = 400) -> None:
        self.n, self.code, self.status, self.calls = n, code, status, 0

    def __call__(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.calls += 1
        if self.calls <= self.n:
            return (
                AWSResponse("http://fault", self.status, {}, None),
                {
                    "Error": {"Code": self.code, "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": self.status},
                },
            )
        return None


def make_service(
    tmp: Path, *, endpoint_url: str | None = None, clock: Clock | None = None, runbooks: Path = RUNBOOKS
) -> RunbookService:
    return RunbookService(
        runbooks_dir=runbooks,
        journal_path=tmp / "state" / "journal.db",
        audit_path=tmp / "state" / "audit.jsonl",
        aws=AwsSettings(region=PRIMARY, endpoint_url=endpoint_url),
        clock=clock or FakeClock(),
        http_timeout=2.0,
    )


def failover_params(world: World, web: Web, **over: str) -> dict[str, str]:
    params = {
        "zone_id": world.zone_id,
        "record_name": world.record,
        "secondary": "west",
        "primary_region": PRIMARY,
        "secondary_region": SECONDARY,
        "listener_arn": world.listener_arn,
        "standby_asg": world.asg,
        "standby_capacity": "4",
        "health_url": f"{web.url}/health",
        "health_interval": "1s",
        "webhook_url": f"{web.url}/hook?token=SECRET-hook-token-123",
    }
    return params | over


def world_of(*parts: str) -> Callable[..., World]:
    """A fixture building only some parts of the world in in-process moto."""

    @pytest.fixture
    def fixture(mocked: ClientFor) -> World:
        return build_world(mocked, frozenset(parts))

    return fixture


# -- database-restore and deployment-rollback ---------------------------------------------------------------

DB_PASSWORD = "SECRET-db-master-pw-4711"  # the source database's master password: must never be written anywhere
DB_HOST_PARAMETER = "/app/database/host"


@dataclass(frozen=True)
class DbWorld:
    """A damaged database the application reaches through an SSM parameter and a CNAME, behind an ALB."""

    kind: str  # instance | cluster
    source: str
    endpoint: str  # the source's endpoint, where the application points before the restore
    zone_id: str = ""
    record: str = "db.example.com"
    parameter: str = DB_HOST_PARAMETER
    listener_arn: str = ""


def build_database(client: ClientFor, kind: str = "instance", *, alb: bool = True) -> DbWorld:
    """An RDS instance 'prod-db' (postgres, 7 days of backups) or an Aurora cluster 'prod-aurora' with its writer
    'prod-aurora-1'; the host parameter and the CNAME db.example.com point at it; the maintenance flag is 'off'."""
    rds = client("rds", PRIMARY)
    if kind == "instance":
        db = rds.create_db_instance(DBInstanceIdentifier="prod-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                                    MasterUsername="app", MasterUserPassword=DB_PASSWORD, AllocatedStorage=20,
                                    BackupRetentionPeriod=7)["DBInstance"]
        source, endpoint = "prod-db", db["Endpoint"]["Address"]
    else:
        cluster = rds.create_db_cluster(DBClusterIdentifier="prod-aurora", Engine="aurora-postgresql",
                                        MasterUsername="app", MasterUserPassword=DB_PASSWORD,
                                        BackupRetentionPeriod=7)["DBCluster"]
        rds.create_db_instance(DBInstanceIdentifier="prod-aurora-1", DBClusterIdentifier="prod-aurora",
                               DBInstanceClass="db.r6g.large", Engine="aurora-postgresql")
        source, endpoint = "prod-aurora", cluster["Endpoint"]
    client("ssm", PRIMARY).put_parameter(Name=DB_HOST_PARAMETER, Value=endpoint, Type="String")
    client("ssm", PRIMARY).put_parameter(Name="/scaler/maintenance", Value="off", Type="String")
    r53 = client("route53", PRIMARY)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference=f"db-{kind}")["HostedZone"]["Id"]
    cname = {"Name": "db.example.com.", "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": endpoint}]}
    r53.change_resource_record_sets(HostedZoneId=zone,
                                    ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": cname}]})
    listener = build_alb(client)[0] if alb else ""
    return DbWorld(kind=kind, source=source, endpoint=endpoint, zone_id=zone.rsplit("/", 1)[-1], listener_arn=listener)


@dataclass(frozen=True)
class DbState:
    """What a database restore changes, read back from the providers."""

    restored: tuple[str, ...]  # identifiers of databases tagged as restored from the source
    restored_status: tuple[str, ...]
    source_status: str  # the damaged one: still there, untouched
    parameter: str | None
    cname: str | None
    maintenance_rules: int
    flag: str | None


def database_state(client: ClientFor, world: DbWorld) -> DbState:
    rds = client("rds", PRIMARY)
    if world.kind == "instance":
        every = rds.describe_db_instances()["DBInstances"]
        source = next(d for d in every if d["DBInstanceIdentifier"] == world.source)["DBInstanceStatus"]
        key, state = "DBInstanceIdentifier", "DBInstanceStatus"
    else:
        every = rds.describe_db_clusters()["DBClusters"]
        source = next(d for d in every if d["DBClusterIdentifier"] == world.source)["Status"]
        key, state = "DBClusterIdentifier", "Status"
    restored = sorted((d for d in every if any(t["Key"] == "scaler:restored-from" and t["Value"] == world.source
                                               for t in d.get("TagList", []))), key=lambda d: d[key])
    elb = client("elbv2", PRIMARY)
    rules = elb.describe_rules(ListenerArn=world.listener_arn)["Rules"] if world.listener_arn else []
    sets = client("route53", PRIMARY).list_resource_record_sets(HostedZoneId=world.zone_id)["ResourceRecordSets"]
    cname = next((r["ResourceRecords"][0]["Value"] for r in sets if r["Type"] == "CNAME"
                  and r["Name"] == f"{world.record}."), None)
    try:
        parameter = client("ssm", PRIMARY).get_parameter(Name=world.parameter)["Parameter"]["Value"]
    except client("ssm", PRIMARY).exceptions.ParameterNotFound:
        parameter = None
    return DbState(
        restored=tuple(d[key] for d in restored),
        restored_status=tuple(d[state] for d in restored),
        source_status=source,
        parameter=parameter,
        cname=cname,
        maintenance_rules=sum(r["Actions"][0]["Type"] == "fixed-response" for r in rules),
        flag=flag_value(client, World()),
    )


def database_params(world: DbWorld, web: Web, **over: str) -> dict[str, str]:
    params = {
        "source": world.source,
        "kind": world.kind,
        "listener_arn": world.listener_arn,
        "endpoint_parameter": world.parameter,
        "zone_id": world.zone_id,
        "record_name": world.record,
        "verify_url": f"{web.url}/verify?host={{endpoint}}&port={{port}}",
        "verify_interval": "1s",
        "webhook_url": f"{web.url}/hook?token=SECRET-hook-token-123",
    }
    return params | over


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Environment variables set for a while (the in-process moto server reads some when it creates things)."""
    import os

    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class EcsWorld:
    """Service shop/api on task definition api:2 (the bad deploy); api:1 ran before it."""

    cluster: str = "shop"
    service: str = "api"
    good: str = ""  # task definition ARNs
    bad: str = ""


def build_rollout_ecs(client: ClientFor, region: str = PRIMARY) -> EcsWorld:
    ec2 = client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.2.1.0/24", AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="api", Description="api", VpcId=vpc)["GroupId"]
    ecs = client("ecs", region)
    ecs.create_cluster(clusterName="shop")
    arns = [ecs.register_task_definition(
        family="api", containerDefinitions=[{"name": "api", "image": f"shop/api:{n}", "memory": 128}],
        requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
    )["taskDefinition"]["taskDefinitionArn"] for n in (1, 2)]
    # moto reports a deployment COMPLETED only when this many tasks run, read when the service is created.
    with environ(MOTO_ECS_SERVICE_RUNNING="2"):
        ecs.create_service(cluster="shop", serviceName="api", taskDefinition=arns[0], desiredCount=2,
                           launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": {
                               "subnets": [subnet], "securityGroups": [sg]}})
    ecs.update_service(cluster="shop", service="api", taskDefinition=arns[1])
    return EcsWorld(good=arns[0], bad=arns[1])


def ecs_task_definition(client: ClientFor, world: EcsWorld, region: str = PRIMARY) -> str:
    return client("ecs", region).describe_services(cluster=world.cluster, services=[world.service])["services"][0][
        "taskDefinition"]


def rollout_params(platform: str, web: Web, **over: str) -> dict[str, str]:
    params = {"platform": platform, "webhook_url": f"{web.url}/hook?token=SECRET-hook-token-123", "interval": "1s"}
    if platform == "ecs":
        params |= {"cluster": "shop", "service": "api"}
    else:
        params |= {"namespace": "shop", "deployment": "checkout"}
    return params | over


@dataclass(frozen=True)
class Switch:
    """The data-plane failover setup: the PRIMARY record's check is `gate`, healthy only while both the
    endpoint check and `switch` (always healthy, until inverted) are."""

    switch: str
    gate: str
    endpoint: str


def build_switch(client: ClientFor, world: World) -> Switch:
    """A switch (CALCULATED, no children) and a gate (CALCULATED over the endpoint check and the switch, both
    needed), and the PRIMARY record 'east' moved from the endpoint check to the gate."""
    r53 = client("route53", PRIMARY)
    east = next(r for r in r53.list_resource_record_sets(HostedZoneId=world.zone_id)["ResourceRecordSets"]
                if r.get("SetIdentifier") == "east")
    switch = r53.create_health_check(
        CallerReference="switch",
        HealthCheckConfig={"Type": "CALCULATED", "HealthThreshold": 0, "ChildHealthChecks": []},
    )["HealthCheck"]["Id"]
    gate = r53.create_health_check(
        CallerReference="gate",
        HealthCheckConfig={"Type": "CALCULATED", "HealthThreshold": 2,
                           "ChildHealthChecks": [east["HealthCheckId"], switch]},
    )["HealthCheck"]["Id"]
    r53.change_resource_record_sets(
        HostedZoneId=world.zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**east, "HealthCheckId": gate}}]},
    )
    return Switch(switch=switch, gate=gate, endpoint=east["HealthCheckId"])


def inverted(client: ClientFor, health_check_id: str) -> bool:
    config = client("route53", PRIMARY).get_health_check(HealthCheckId=health_check_id)["HealthCheck"]
    return bool(config["HealthCheckConfig"]["Inverted"])


def failback_params(world: World, web: Web, **over: str) -> dict[str, str]:
    """region-failback after failover_params' failover: the primary answers on /health of the local server."""
    params = {
        "zone_id": world.zone_id,
        "record_name": world.record,
        "primary": "east",
        "primary_region": PRIMARY,
        "secondary_region": SECONDARY,
        "listener_arn": world.listener_arn,
        "primary_health_url": f"{web.url}/health",
        "health_interval": "1s",
        "standby_asg": world.asg,
        "webhook_url": f"{web.url}/hook?token=SECRET-hook-token-123",
    }
    return params | over
