"""RDS recovery: a point-in-time restore as a new database (the damaged one untouched), verified, and repointing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from scaler.errors import PermanentError, ProviderError, ScalerError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.actions.http import HealthCheck, HealthInputs
from scaler.runbook.actions.ssm import current as parameter_now
from scaler.runbook.errors import StepTimeout
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds

Kind = Literal["instance", "cluster"]
RUN_TAG = "scaler:run"  # on a restored database: the run that made it (a resume finds it; no other run takes it)
SOURCE_TAG = "scaler:restored-from"
# Statuses a restore does not come back from by waiting: the step fails instead of sitting out its timeout.
DEAD = frozenset(
    {
        "failed",
        "incompatible-restore",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "inaccessible-encryption-credentials",
        "restore-error",
        "storage-full",
        "deleting",
    }
)
NOT_FOUND = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault"})
IDENT_MAX = 63  # RDS identifiers: letters, digits and hyphens, a letter first, no '--', no trailing '-'


def utc_text(value: Any) -> str | None:
    """A time from boto3 (datetime) or text as ISO 8601 in UTC, or None."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def describe(ctx: ActionContext, kind: Kind, identifier: str) -> dict[str, Any] | None:
    """The instance or cluster as RDS describes it, or None when there is none by that identifier."""
    try:
        if kind == "instance":
            found = ctx.aws("rds", "describe_db_instances", DBInstanceIdentifier=identifier)["DBInstances"]
        else:
            found = ctx.aws("rds", "describe_db_clusters", DBClusterIdentifier=identifier)["DBClusters"]
    except ProviderError as e:
        if e.code in NOT_FOUND:
            return None
        raise
    return found[0] if found else None


def status(db: Mapping[str, Any]) -> str:
    return str(db.get("DBInstanceStatus") or db.get("Status") or "unknown")


def tags(db: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in db.get("TagList") or []}


def endpoint(kind: Kind, db: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(host, port) clients connect to: an instance's address, or a cluster's writer endpoint."""
    if kind == "instance":
        found = db.get("Endpoint") or {}
        return found.get("Address"), found.get("Port")
    return db.get("Endpoint"), db.get("Port")


def missing(kind: Kind, identifier: str) -> PermanentError:
    return PermanentError(f"rds: no DB {kind} {identifier!r}", provider="rds", code="NotFound")


def until_available(ctx: ActionContext, kind: Kind, identifier: str, interval: float) -> dict[str, Any]:
    """Describe every `interval` seconds until the database is available; fail at once on a dead status."""
    while True:
        db = describe(ctx, kind, identifier)
        if db is None:
            raise missing(kind, identifier)
        now = status(db)
        if now == "available":
            return db
        if now in DEAD:
            raise PermanentError(f"rds: DB {kind} {identifier} is {now}", provider="rds", code="RestoreFailed")
        try:
            ctx.sleep(interval)
        except StepTimeout:
            raise StepTimeout(f"rds: DB {kind} {identifier} still {now} when the step's time ran out") from None


def derived_target(source: str, token: str, room: int = IDENT_MAX) -> str:
    """'prod-db' in some run -> 'prod-db-r1f0c3a9b': fixed by run and step, so a retry or resume finds the
    database it started instead of starting a second one, and two runs never pick the same name."""
    suffix = "r" + token.replace("-", "")[:8]
    base = re.sub(r"-+", "-", source.lower())[: room - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"


def writer_of(target: str) -> str:
    """The identifier of the writer instance a restored cluster gets: 'prod-aurora-r1f0c3a9b' -> '...-1'."""
    return target[: IDENT_MAX - 2].rstrip("-") + "-1"


class RestoreInputs(Inputs):
    kind: Kind = Field("instance", description="instance: a DB instance; cluster: an Aurora DB cluster")
    source: str = Field(description="Identifier of the damaged instance or cluster; read, never changed")
    target: str | None = Field(
        None,
        max_length=IDENT_MAX,
        description="Identifier of the new one; default: the source's plus a suffix fixed by run and step",
    )
    restore_time: str = Field(
        "latest", description="Point in time to restore, ISO 8601 with a zone ('2025-03-01T11:55:00Z'), or latest"
    )
    instance_class: str | None = Field(None, description="Default: the source's (a cluster: its writer's)")
    subnet_group: str | None = Field(None, description="DB subnet group; default: the source's")
    security_group_ids: list[str] | None = Field(None, description="VPC security groups; default: the source's")
    interval: PositiveSeconds = Field(30.0, description="Seconds between looks while the restore runs")

    @field_validator("restore_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if value == "latest":
            return value
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected 'latest' or an ISO 8601 time such as 2025-03-01T11:55:00Z") from None
        if when.tzinfo is None:
            # A time without a zone would be read in whatever zone RDS assumes: say which one instead.
            raise ValueError("the time needs a zone, e.g. 2025-03-01T11:55:00Z")
        return value


class RestorePointInTime(Action[RestoreInputs]):
    name = "rds.restore_point_in_time"
    summary = "Restore an instance (or Aurora cluster) to a point in time as a new one and wait until available"
    inputs = RestoreInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if inputs.get("kind", "instance") == "cluster":
            return [
                read("rds", "describe_db_clusters", DBClusterIdentifier=inputs.get("source")),
                call(
                    "rds",
                    "restore_db_cluster_to_point_in_time",
                    SourceDBClusterIdentifier=inputs.get("source"),
                    DBClusterIdentifier=inputs.get("target") or "<source-r + run>",
                    RestoreTime=inputs.get("restore_time", "latest"),
                ),
                call("rds", "create_db_instance", DBClusterIdentifier=inputs.get("target") or "<source-r + run>"),
                read("rds", "describe_db_instances"),
            ]
        return [
            read("rds", "describe_db_instances", DBInstanceIdentifier=inputs.get("source")),
            call(
                "rds",
                "restore_db_instance_to_point_in_time",
                SourceDBInstanceIdentifier=inputs.get("source"),
                TargetDBInstanceIdentifier=inputs.get("target") or "<source-r + run>",
                RestoreTime=inputs.get("restore_time", "latest"),
            ),
            read("rds", "describe_db_instances", DBInstanceIdentifier=inputs.get("target") or "<source-r + run>"),
        ]

    def run(self, inputs: RestoreInputs, ctx: ActionContext) -> dict[str, Any]:
        kind = inputs.kind
        source = describe(ctx, kind, inputs.source)
        if source is None:
            raise missing(kind, inputs.source)
        if not int(source.get("BackupRetentionPeriod") or 0):
            raise PermanentError(
                f"rds: {inputs.source} keeps no automated backups (retention 0): no point-in-time restore",
                provider="rds",
                code="NoBackups",
            )
        latest = source.get("LatestRestorableTime")
        if inputs.restore_time != "latest" and isinstance(latest, datetime):
            if datetime.fromisoformat(inputs.restore_time) > latest:
                # AWS refuses this too (InvalidRestoreFault); saying so before the call names both times.
                raise PermanentError(
                    f"rds: {inputs.restore_time} is after the latest restorable time of {inputs.source} "
                    f"({utc_text(latest)})",
                    provider="rds",
                    code="InvalidRestoreTime",
                )
        room = IDENT_MAX if kind == "instance" else IDENT_MAX - 2
        target = inputs.target or derived_target(inputs.source, ctx.token("target"), room)
        if target == inputs.source:
            raise PermanentError("rds: the restore needs a new identifier", provider="rds", code="SameIdentifier")
        # The point restored to, as seen before the call: for 'latest', the newest restorable time then.
        point = ctx.memo("restore_time", lambda: utc_text(latest) if inputs.restore_time == "latest" else None)
        point = point or inputs.restore_time
        mark = [{"Key": RUN_TAG, "Value": ctx.run_id}, {"Key": SOURCE_TAG, "Value": inputs.source}]

        found = describe(ctx, kind, target)
        if found is None:
            self.start(inputs, ctx, source, target, mark)
        else:
            self.check_ours(ctx, kind, target, found)
        if kind == "cluster":
            cluster = until_available(ctx, "cluster", target, inputs.interval)
            writer = self.writer(inputs, ctx, source, cluster, mark)
            until_available(ctx, "instance", writer, inputs.interval)
            db = until_available(ctx, "cluster", target, inputs.interval)
        else:
            writer = target
            db = until_available(ctx, "instance", target, inputs.interval)
        host, port = endpoint(kind, db)
        return {
            "kind": kind,
            "source": inputs.source,
            "target": target,
            "instance": writer,
            "arn": db.get("DBInstanceArn") or db.get("DBClusterArn"),
            "engine": db.get("Engine"),
            "status": status(db),
            "endpoint": host,
            "port": port,
            "restore_time": point,
            "latest": inputs.restore_time == "latest",
        }

    @staticmethod
    def check_ours(ctx: ActionContext, kind: Kind, identifier: str, db: Mapping[str, Any]) -> None:
        if tags(db).get(RUN_TAG) != ctx.run_id:
            raise PermanentError(
                f"rds: a DB {kind} {identifier!r} exists that this run did not make; give another target",
                provider="rds",
                code="TargetExists",
            )

    @staticmethod
    def start(
        inputs: RestoreInputs, ctx: ActionContext, source: Mapping[str, Any], target: str, mark: list[dict[str, str]]
    ) -> None:
        """The restore call, placed where the source is (subnet group, security groups, parameter group)."""
        groups = inputs.security_group_ids or [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups") or []]
        args: dict[str, Any] = {"Tags": mark}
        if inputs.restore_time == "latest":
            args["UseLatestRestorableTime"] = True
        else:
            when = datetime.fromisoformat(inputs.restore_time)
            args["RestoreTime" if inputs.kind == "instance" else "RestoreToTime"] = when
        if groups:
            args["VpcSecurityGroupIds"] = groups
        if inputs.kind == "instance":
            subnets = inputs.subnet_group or (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
            params = [p["DBParameterGroupName"] for p in source.get("DBParameterGroups") or []]
            args |= {
                "SourceDBInstanceIdentifier": inputs.source,
                "TargetDBInstanceIdentifier": target,
                "DBInstanceClass": inputs.instance_class or source["DBInstanceClass"],
                "MultiAZ": bool(source.get("MultiAZ")),
                "DeletionProtection": bool(source.get("DeletionProtection")),
            }
            if subnets:
                args["DBSubnetGroupName"] = subnets
            if params:
                args["DBParameterGroupName"] = params[0]
            ctx.aws("rds", "restore_db_instance_to_point_in_time", **args)
            return
        subnets = inputs.subnet_group or source.get("DBSubnetGroup")
        args |= {
            "SourceDBClusterIdentifier": inputs.source,
            "DBClusterIdentifier": target,
            "DeletionProtection": bool(source.get("DeletionProtection")),
        }
        if subnets:
            args["DBSubnetGroupName"] = subnets
        if source.get("DBClusterParameterGroup"):
            args["DBClusterParameterGroupName"] = source["DBClusterParameterGroup"]
        ctx.aws("rds", "restore_db_cluster_to_point_in_time", **args)

    def writer(
        self,
        inputs: RestoreInputs,
        ctx: ActionContext,
        source: Mapping[str, Any],
        cluster: Mapping[str, Any],
        mark: list[dict[str, str]],
    ) -> str:
        """A restored cluster has no instances: create its writer (once), sized like the source's writer."""
        writer = writer_of(str(cluster["DBClusterIdentifier"]))
        found = describe(ctx, "instance", writer)
        if found is not None:
            self.check_ours(ctx, "instance", writer, found)
            return writer
        size = inputs.instance_class
        if size is None:
            members = source.get("DBClusterMembers") or []
            old = next((m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")), None)
            old_db = describe(ctx, "instance", old) if old else None
            if old_db is None:
                raise PermanentError(
                    f"rds: cluster {inputs.source} has no writer instance to copy the size from; give instance_class",
                    provider="rds",
                    code="NoInstanceClass",
                )
            size = str(old_db["DBInstanceClass"])
        ctx.aws(
            "rds",
            "create_db_instance",
            DBInstanceIdentifier=writer,
            DBClusterIdentifier=cluster["DBClusterIdentifier"],
            Engine=cluster["Engine"],
            DBInstanceClass=size,
            Tags=mark,
        )
        return writer


class DescribeInputs(Inputs):
    kind: Kind = "instance"
    identifier: str = Field(description="DB instance or cluster identifier")


class Describe(Action[DescribeInputs]):
    name = "rds.describe"
    summary = "Read a DB instance or cluster (for preconditions and verify): exists, status, endpoint, port"
    inputs = DescribeInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if inputs.get("kind", "instance") == "cluster":
            return [read("rds", "describe_db_clusters", DBClusterIdentifier=inputs.get("identifier"))]
        return [read("rds", "describe_db_instances", DBInstanceIdentifier=inputs.get("identifier"))]

    def run(self, inputs: DescribeInputs, ctx: ActionContext) -> dict[str, Any]:
        db = describe(ctx, inputs.kind, inputs.identifier)
        if db is None:
            return {
                "exists": False,
                "status": None,
                "endpoint": None,
                "port": None,
                "engine": None,
                "restored_from": None,
            }
        host, port = endpoint(inputs.kind, db)
        return {
            "exists": True,
            "status": status(db),
            "endpoint": host,
            "port": port,
            "engine": db.get("Engine"),
            "restored_from": tags(db).get(SOURCE_TAG),
        }


class VerifyInputs(Inputs):
    kind: Kind = "instance"
    identifier: str = Field(description="The restored instance or cluster")
    url: str | None = Field(
        None,
        description="A check that must answer well N times in a row; {endpoint}, {port} and {identifier} are "
        "replaced (e.g. https://dbcheck.internal/verify?host={endpoint}). None: the RDS status alone",
    )
    successes: int = Field(3, ge=1, le=1000, description="Consecutive good answers needed")
    interval: PositiveSeconds = Field(5.0, description="Seconds between looks and between probes")
    expect_status: list[int] = Field(default_factory=list, description="Good statuses; empty means 200-399")


class Verify(Action[VerifyInputs]):
    name = "rds.verify"
    summary = "The database is available with an endpoint, and (with url) a check against it passes N times"
    inputs = VerifyInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        calls = Describe().plan(inputs)
        if inputs.get("url"):
            calls.append(read("http", "GET", url=inputs.get("url"), successes=inputs.get("successes", 3)))
        return calls

    def run(self, inputs: VerifyInputs, ctx: ActionContext) -> dict[str, Any]:
        db = until_available(ctx, inputs.kind, inputs.identifier, inputs.interval)
        host, port = endpoint(inputs.kind, db)
        if not host:
            raise PermanentError(
                f"rds: {inputs.identifier} is available without an endpoint", provider="rds", code="NoEndpoint"
            )
        out: dict[str, Any] = {"status": status(db), "endpoint": host, "port": port, "probes": 0}
        if inputs.url:
            url = (
                inputs.url.replace("{endpoint}", host)
                .replace("{port}", str(port or ""))
                .replace("{identifier}", inputs.identifier)
            )
            probed = HealthCheck().run(
                HealthInputs(
                    url=url, successes=inputs.successes, interval=inputs.interval, expect_status=inputs.expect_status
                ),
                ctx,
            )
            out |= {"probes": probed["probes"], "last_status": probed["last_status"]}
        return out


# -- pointing the application at a database --------------------------------------------------------------


def fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def zone(zone_id: str) -> str:
    """'/hostedzone/Z123' or 'Z123' -> 'Z123'."""
    return zone_id.rsplit("/", 1)[-1]


def host(value: str) -> str:
    """A host name compared loosely: 'DB.example.com.' and 'db.example.com' are one host."""
    return value.strip().lower().rstrip(".")


def cname_now(ctx: ActionContext, zone_id: str, name: str) -> dict[str, Any] | None:
    """The plain CNAME record set named `name`, or None. One with a routing policy is not ours to manage."""
    page = ctx.aws(
        "route53",
        "list_resource_record_sets",
        HostedZoneId=zone(zone_id),
        StartRecordName=fqdn(name),
        StartRecordType="CNAME",
        MaxItems="5",
    )
    found = [r for r in page.get("ResourceRecordSets", []) if fqdn(r["Name"]) == fqdn(name) and r["Type"] == "CNAME"]
    if any(r.get("SetIdentifier") for r in found):
        raise PermanentError(
            f"route53: {name} CNAME has a routing policy (SetIdentifier); only a plain CNAME is repointed",
            provider="route53",
            code="RoutedRecord",
        )
    return found[0] if found else None


def cname_change(ctx: ActionContext, zone_id: str, action: str, record: Mapping[str, Any], interval: float) -> str:
    """One change of one CNAME, waited on until INSYNC (clients resolve the new name only then)."""
    change = ctx.aws(
        "route53",
        "change_resource_record_sets",
        HostedZoneId=zone(zone_id),
        ChangeBatch={
            "Comment": f"scaler run {ctx.run_id} step {ctx.step_id}"[:256],
            "Changes": [{"Action": action, "ResourceRecordSet": dict(record)}],
        },
    )["ChangeInfo"]
    while change["Status"] != "INSYNC":
        ctx.sleep(interval)
        change = ctx.aws("route53", "get_change", Id=change["Id"])["ChangeInfo"]
    return str(change["Id"])


def set_parameter(ctx: ActionContext, name: str, value: str | None) -> bool:
    """Put `value` into the String parameter (None deletes it) unless it is already so; True if it changed."""
    param = parameter_now(ctx, name)
    if param is not None and param.get("Type") != "String":
        raise PermanentError(
            f"ssm parameter {name} is {param.get('Type')}; only String is managed",
            provider="ssm",
            code="UnsupportedType",
        )
    have = None if param is None else param["Value"]
    if have == value:
        return False
    if value is None:
        ctx.aws("ssm", "delete_parameter", Name=name)
    else:
        ctx.aws("ssm", "put_parameter", Name=name, Value=value, Type="String", Overwrite=True)
    return True


class PointInputs(Inputs):
    endpoint: str = Field(min_length=1, description="Host name the application should use (a restore's endpoint)")
    parameter: str | None = Field(None, description="SSM String parameter the application reads the host from")
    zone_id: str | None = Field(None, description="Hosted zone of `record_name`")
    record_name: str | None = Field(None, description="CNAME the application connects to, e.g. db.example.com")
    ttl: int = Field(60, ge=0, description="Seconds resolvers may cache the CNAME")
    interval: PositiveSeconds = Field(2.0, description="Seconds between GetChange polls")

    @model_validator(mode="after")
    def _somewhere(self) -> PointInputs:
        if (self.zone_id is None) != (self.record_name is None):
            raise ValueError("zone_id and record_name go together")
        if self.parameter is None and self.record_name is None:
            raise ValueError("nothing to point: give parameter, or zone_id and record_name, or both")
        return self


class PointApp(Action[PointInputs]):
    name = "rds.point_app"
    summary = "Point the application at a database host: an SSM String parameter and/or a plain CNAME"
    inputs = PointInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        calls: list[ProviderCall] = []
        if inputs.get("parameter"):
            calls += [
                read("ssm", "get_parameter", Name=inputs.get("parameter")),
                call("ssm", "put_parameter", Name=inputs.get("parameter"), Value=inputs.get("endpoint")),
            ]
        if inputs.get("record_name"):
            calls += [
                read(
                    "route53",
                    "list_resource_record_sets",
                    HostedZoneId=inputs.get("zone_id"),
                    StartRecordName=inputs.get("record_name"),
                ),
                call(
                    "route53",
                    "change_resource_record_sets",
                    HostedZoneId=inputs.get("zone_id"),
                    Action="UPSERT",
                    Name=inputs.get("record_name"),
                    Type="CNAME",
                    Value=inputs.get("endpoint"),
                ),
            ]
        return calls

    def run(self, inputs: PointInputs, ctx: ActionContext) -> dict[str, Any]:
        # What the application used before, remembered before anything changes: compensation puts it back.
        def before() -> dict[str, Any]:
            out: dict[str, Any] = {"parameter": None, "record": None}
            if inputs.parameter:
                param = parameter_now(ctx, inputs.parameter)
                out["parameter"] = {"name": inputs.parameter, "value": None if param is None else param["Value"]}
            if inputs.zone_id and inputs.record_name:
                rec = cname_now(ctx, inputs.zone_id, inputs.record_name)
                out["record"] = {
                    "zone_id": zone(inputs.zone_id),
                    "name": fqdn(inputs.record_name),
                    "value": rec["ResourceRecords"][0]["Value"] if rec else None,
                    "ttl": rec.get("TTL") if rec else None,
                }
            return out

        previous = ctx.memo("previous", before)
        changed, change_id = False, None
        if inputs.parameter:
            changed |= set_parameter(ctx, inputs.parameter, inputs.endpoint)
        try:
            change_id = self.repoint_record(inputs, ctx)
        except ScalerError:
            # Half pointed is worse than not at all: the parameter goes back before the error goes up (the
            # step's compensation runs only for a step that completed).
            if previous["parameter"] is not None:
                try:
                    set_parameter(ctx, inputs.parameter or "", previous["parameter"]["value"])
                except ScalerError as e:
                    ctx.log(f"could not put {inputs.parameter} back: {e}")
            raise
        changed |= change_id is not None
        return {"endpoint": inputs.endpoint, "changed": changed, "change_id": change_id, "previous": previous}

    @staticmethod
    def repoint_record(inputs: PointInputs, ctx: ActionContext) -> str | None:
        """UPSERT the CNAME to the endpoint unless it is so already; the change id, or None."""
        if inputs.zone_id and inputs.record_name:
            rec = cname_now(ctx, inputs.zone_id, inputs.record_name)
            values = [host(v["Value"]) for v in (rec or {}).get("ResourceRecords", [])]
            if values != [host(inputs.endpoint)] or rec is None or rec.get("TTL") != inputs.ttl:
                want = {
                    "Name": fqdn(inputs.record_name),
                    "Type": "CNAME",
                    "TTL": inputs.ttl,
                    "ResourceRecords": [{"Value": inputs.endpoint}],
                }
                return cname_change(ctx, inputs.zone_id, "UPSERT", want, inputs.interval)
        return None


class PointBackInputs(Inputs):
    previous: dict[str, Any] = Field(description="The `previous` output of an rds.point_app step")
    interval: PositiveSeconds = Field(2.0, description="Seconds between GetChange polls")


class PointAppBack(Action[PointBackInputs]):
    name = "rds.point_app_back"
    summary = "Undo rds.point_app: the parameter and the CNAME as they were (deleted where there was none)"
    inputs = PointBackInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            call("ssm", "put_parameter", Name="<previous parameter>"),
            call("route53", "change_resource_record_sets", Action="UPSERT/DELETE", Name="<previous record>"),
        ]

    def run(self, inputs: PointBackInputs, ctx: ActionContext) -> dict[str, Any]:
        changed, change_id = False, None
        param = inputs.previous.get("parameter")
        if param:
            changed |= set_parameter(ctx, param["name"], param.get("value"))
        rec = inputs.previous.get("record")
        if rec:
            now = cname_now(ctx, rec["zone_id"], rec["name"])
            if rec.get("value") is None and now is not None:
                change_id = cname_change(ctx, rec["zone_id"], "DELETE", now, inputs.interval)  # exactly as it is
                changed = True
            elif rec.get("value") is not None:
                have = [host(v["Value"]) for v in (now or {}).get("ResourceRecords", [])]
                if have != [host(rec["value"])] or (now or {}).get("TTL") != rec.get("ttl"):
                    want = {
                        "Name": rec["name"],
                        "Type": "CNAME",
                        "TTL": rec.get("ttl") if rec.get("ttl") is not None else 60,
                        "ResourceRecords": [{"Value": rec["value"]}],
                    }
                    change_id = cname_change(ctx, rec["zone_id"], "UPSERT", want, inputs.interval)
                    changed = True
        return {"changed": changed, "change_id": change_id}
