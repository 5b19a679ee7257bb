"""Route 53 actions: upsert, fail over (rewriting record sets or inverting a switch health check), restore, wait."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from scaler.errors import PermanentError, ProviderError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds

Record = dict[str, Any]
Key = tuple[str, str, str]  # (name with trailing dot, type, set identifier or "")


def fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def zone(zone_id: str) -> str:
    """'/hostedzone/Z123' or 'Z123' -> 'Z123'."""
    return zone_id.rsplit("/", 1)[-1]


def key(record: Mapping[str, Any]) -> Key:
    return (fqdn(str(record["Name"])), str(record["Type"]), str(record.get("SetIdentifier") or ""))


def normal(record: Mapping[str, Any]) -> Record:
    """A record set in one canonical spelling, so "already as wanted" is a plain comparison."""
    out = {k: v for k, v in record.items() if v is not None}
    out["Name"] = fqdn(str(record["Name"]))
    if "ResourceRecords" in out:
        out["ResourceRecords"] = sorted(out["ResourceRecords"], key=lambda r: str(r.get("Value")))
    return out


def record_sets(ctx: ActionContext, zone_id: str, name: str, rtype: str) -> list[Record]:
    """Every record set named exactly `name` of type `rtype` (all set identifiers), paging as needed."""
    args: dict[str, Any] = {
        "HostedZoneId": zone(zone_id),
        "StartRecordName": fqdn(name),
        "StartRecordType": rtype,
    }
    found: list[Record] = []
    while True:
        page = ctx.aws("route53", "list_resource_record_sets", **args)
        for rec in page.get("ResourceRecordSets", []):
            if fqdn(rec["Name"]) == fqdn(name) and rec["Type"] == rtype:
                found.append(rec)
        same = fqdn(str(page.get("NextRecordName", ""))) == fqdn(name) and page.get("NextRecordType") == rtype
        if not page.get("IsTruncated") or not same:
            return found
        args["StartRecordIdentifier"] = page.get("NextRecordIdentifier")


def change(ctx: ActionContext, zone_id: str, changes: list[dict[str, Any]], comment: str) -> str:
    out = ctx.aws(
        "route53",
        "change_resource_record_sets",
        HostedZoneId=zone(zone_id),
        ChangeBatch={"Comment": comment[:256], "Changes": changes},
    )
    return str(out["ChangeInfo"]["Id"])


class UpsertInputs(Inputs):
    canonical = {"zone_id": zone, "name": fqdn}

    zone_id: str = Field(description="Hosted zone id, 'Z123' or '/hostedzone/Z123'")
    name: str = Field(description="Record name, e.g. app.example.com")
    type: str = Field("A", description="Record type: A, AAAA, CNAME, TXT ...")
    ttl: int = Field(60, ge=0, description="Seconds resolvers may cache the answer")
    values: list[str] = Field(min_length=1, description="Record values, e.g. IP addresses")
    set_identifier: str | None = Field(None, description="Needed with failover or weight")
    failover: Literal["PRIMARY", "SECONDARY"] | None = None
    weight: int | None = Field(None, ge=0, le=255)
    health_check_id: str | None = None

    @model_validator(mode="after")
    def _routing(self) -> UpsertInputs:
        if (self.failover or self.weight is not None) and not self.set_identifier:
            raise ValueError("failover and weight records need a set_identifier")
        return self


class UpsertRecord(Action[UpsertInputs]):
    name = "route53.upsert_record"
    summary = "Create or change one record set (no change when it is already as wanted)"
    inputs = UpsertInputs

    @staticmethod
    def desired(i: UpsertInputs) -> Record:
        rec: Record = {
            "Name": fqdn(i.name),
            "Type": i.type,
            "TTL": i.ttl,
            "ResourceRecords": [{"Value": v} for v in i.values],
            "SetIdentifier": i.set_identifier,
            "Failover": i.failover,
            "Weight": i.weight,
            "HealthCheckId": i.health_check_id,
        }
        return {k: v for k, v in rec.items() if v is not None}

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read(
                "route53",
                "list_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                StartRecordName=inputs.get("name"),
            ),
            call(
                "route53",
                "change_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                Action="UPSERT",
                Name=inputs.get("name"),
                Values=inputs.get("values"),
            ),
        ]

    def run(self, inputs: UpsertInputs, ctx: ActionContext) -> dict[str, Any]:
        want = self.desired(inputs)

        def current() -> list[Record]:
            return [r for r in record_sets(ctx, inputs.zone_id, inputs.name, inputs.type) if key(r) == key(want)]

        # Remembered before acting: a re-run after a crash must still see the state before this run.
        previous = ctx.memo("previous", current)
        now = current()
        if now and normal(now[0]) == normal(want):
            return {"changed": False, "change_id": None, "previous": previous, "records": [want]}
        change_id = change(
            ctx,
            inputs.zone_id,
            [{"Action": "UPSERT", "ResourceRecordSet": want}],
            f"scaler run {ctx.run_id} step {ctx.step_id}",
        )
        return {"changed": True, "change_id": change_id, "previous": previous, "records": [want]}


class FailoverInputs(Inputs):
    canonical = {"zone_id": zone, "name": fqdn}

    zone_id: str
    name: str
    type: str = "A"
    to: str = Field(description="SetIdentifier of the record set that should receive the traffic")
    weight: int = Field(100, ge=1, le=255, description="Weighted sets only: weight given to `to`")


class Failover(Action[FailoverInputs]):
    name = "route53.failover"
    summary = "Send traffic to one set: make it PRIMARY (others SECONDARY), or give it all the weight"
    inputs = FailoverInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read(
                "route53",
                "list_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                StartRecordName=inputs.get("name"),
            ),
            call(
                "route53",
                "change_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                Action="UPSERT",
                Name=inputs.get("name"),
                PrimaryOrWeightTo=inputs.get("to"),
            ),
        ]

    @staticmethod
    def target(sets: list[Record], i: FailoverInputs) -> list[Record]:
        """The record sets as they should be after failing over to `i.to`."""
        if all("Failover" in r for r in sets):
            # Swapping roles in one change batch: Route 53 checks the batch as a whole, so for a moment
            # there are never two PRIMARY records.
            return [{**r, "Failover": "PRIMARY" if r["SetIdentifier"] == i.to else "SECONDARY"} for r in sets]
        if all("Weight" in r for r in sets):
            return [{**r, "Weight": i.weight if r["SetIdentifier"] == i.to else 0} for r in sets]
        raise PermanentError(
            f"{i.name} {i.type}: the record sets are neither all failover nor all weighted",
            provider="route53",
            code="MixedRouting",
        )

    def run(self, inputs: FailoverInputs, ctx: ActionContext) -> dict[str, Any]:
        def current() -> list[Record]:
            return [r for r in record_sets(ctx, inputs.zone_id, inputs.name, inputs.type) if r.get("SetIdentifier")]

        previous = ctx.memo("previous", current)
        sets = current()
        if inputs.to not in {r["SetIdentifier"] for r in sets}:
            raise PermanentError(
                f"{inputs.name} {inputs.type}: no record set with SetIdentifier {inputs.to!r}",
                provider="route53",
                code="NoSuchRecordSet",
            )
        want = self.target(sets, inputs)
        changes = [
            {"Action": "UPSERT", "ResourceRecordSet": w}
            for w, have in zip(want, sets, strict=True)
            if normal(w) != normal(have)
        ]
        if not changes:
            return {
                "changed": False,
                "change_id": None,
                "active": inputs.to,
                "previous": previous,
                "records": want,
            }
        change_id = change(ctx, inputs.zone_id, changes, f"scaler run {ctx.run_id}: fail over to {inputs.to}")
        return {
            "changed": True,
            "change_id": change_id,
            "active": inputs.to,
            "previous": previous,
            "records": want,
        }


class RestoreInputs(Inputs):
    canonical = {"zone_id": zone}

    zone_id: str
    records: list[dict[str, Any]] = Field(description="Record sets to put back (a step's `previous` output)")
    current: list[dict[str, Any]] = Field(
        default_factory=list, description="Record sets the step wrote; removed when not among `records`"
    )


class RestoreRecords(Action[RestoreInputs]):
    name = "route53.restore_records"
    summary = "Put record sets back as they were (the usual compensation for upsert_record and failover)"
    inputs = RestoreInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            call(
                "route53",
                "change_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                Action="UPSERT/DELETE",
                Records=inputs.get("records"),
            )
        ]

    def run(self, inputs: RestoreInputs, ctx: ActionContext) -> dict[str, Any]:
        involved = {key(r) for r in [*inputs.records, *inputs.current]}
        live: dict[Key, Record] = {}
        for name, rtype in {(k[0], k[1]) for k in involved}:
            for r in record_sets(ctx, inputs.zone_id, name, rtype):
                live[key(r)] = r
        keep = {key(r) for r in inputs.records}
        changes: list[dict[str, Any]] = []
        for r in inputs.current:
            if key(r) not in keep and key(r) in live:
                # DELETE must name the record exactly as it is now.
                changes.append({"Action": "DELETE", "ResourceRecordSet": live[key(r)]})
        for r in inputs.records:
            if key(r) not in live or normal(live[key(r)]) != normal(r):
                changes.append({"Action": "UPSERT", "ResourceRecordSet": r})
        if not changes:
            return {"changed": False, "change_id": None}
        return {
            "changed": True,
            "change_id": change(ctx, inputs.zone_id, changes, f"scaler run {ctx.run_id}: restore"),
        }


class WaitInputs(Inputs):
    change_id: str | None = Field(description="A change id; none (nothing changed) returns at once")
    interval: PositiveSeconds = Field(2.0, description="Seconds between GetChange polls")


class WaitInsync(Action[WaitInputs]):
    name = "route53.wait_insync"
    summary = "Wait until a change is INSYNC on every Route 53 authoritative server"
    inputs = WaitInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [read("route53", "get_change", Id=inputs.get("change_id"))]

    def run(self, inputs: WaitInputs, ctx: ActionContext) -> dict[str, Any]:
        if not inputs.change_id:
            return {"status": "INSYNC", "polls": 0}
        polls = 0
        while True:
            polls += 1
            status = ctx.aws("route53", "get_change", Id=inputs.change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return {"status": status, "polls": polls}
            ctx.sleep(inputs.interval)


class GetInputs(Inputs):
    canonical = {"zone_id": zone, "name": fqdn}

    zone_id: str
    name: str
    type: str = "A"
    set_identifier: str | None = None


class GetRecord(Action[GetInputs]):
    name = "route53.get_record"
    summary = "Read a record set (for preconditions and verify): exists, values, failover role, primary"
    inputs = GetInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read(
                "route53",
                "list_resource_record_sets",
                HostedZoneId=inputs.get("zone_id"),
                StartRecordName=inputs.get("name"),
            )
        ]

    def run(self, inputs: GetInputs, ctx: ActionContext) -> dict[str, Any]:
        sets = record_sets(ctx, inputs.zone_id, inputs.name, inputs.type)
        primary = next((r["SetIdentifier"] for r in sets if r.get("Failover") == "PRIMARY"), None)
        if inputs.set_identifier is not None:
            sets = [r for r in sets if r.get("SetIdentifier") == inputs.set_identifier]
        first = sets[0] if sets else {}
        return {
            "exists": bool(sets),
            "count": len(sets),
            "values": [v["Value"] for v in first.get("ResourceRecords", [])],
            "failover": first.get("Failover"),
            "weight": first.get("Weight"),
            "primary": primary,
        }


# Health checks whose status follows an endpoint in the region being failed over: inverted while that endpoint
# is down, they report healthy, and Route 53 sends traffic straight back to it.
ENDPOINT_TYPES = frozenset({"HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH", "TCP"})


def health_check(ctx: ActionContext, health_check_id: str) -> dict[str, Any]:
    return ctx.aws("route53", "get_health_check", HealthCheckId=health_check_id)["HealthCheck"]


def follows_endpoint(config: Mapping[str, Any]) -> bool:
    """An endpoint check, or a calculated one over child checks (which may be endpoint checks)."""
    kind = str(config.get("Type", ""))
    return kind in ENDPOINT_TYPES or (kind == "CALCULATED" and bool(config.get("ChildHealthChecks")))


class InvertInputs(Inputs):
    health_check_id: str | None = Field(
        description="The switch health check the PRIMARY record depends on; empty: there is none, nothing to do"
    )
    inverted: bool | None = Field(True, description="true moves traffic away, false gives it back; null: leave")
    allow_endpoint_check: bool = Field(
        False,
        description="Also invert a check that follows an endpoint (HTTP/HTTPS/TCP, or CALCULATED with children). "
        "Off by default: while that endpoint is down the inverted check is healthy, so traffic goes back to it",
    )


class InvertHealthCheck(Action[InvertInputs]):
    name = "route53.invert_health_check"
    summary = "Invert (or un-invert) a health check so Route 53's own checkers move traffic; outputs the previous"
    inputs = InvertInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if not inputs.get("health_check_id"):
            return []
        return [
            read("route53", "get_health_check", HealthCheckId=inputs.get("health_check_id")),
            call(
                "route53",
                "update_health_check",
                HealthCheckId=inputs.get("health_check_id"),
                Inverted=inputs.get("inverted", True),
            ),
        ]

    def run(self, inputs: InvertInputs, ctx: ActionContext) -> dict[str, Any]:
        if not inputs.health_check_id:
            return {"health_check_id": None, "previous": None, "inverted": None, "changed": False, "type": None}
        config = health_check(ctx, inputs.health_check_id)["HealthCheckConfig"]
        have = bool(config.get("Inverted", False))
        previous = ctx.memo("previous", lambda: have)
        out: dict[str, Any] = {
            "health_check_id": inputs.health_check_id,
            "previous": previous,
            "inverted": have if inputs.inverted is None else inputs.inverted,
            "changed": False,
            "type": config.get("Type"),
        }
        if inputs.inverted is None or have == inputs.inverted:
            return out
        if inputs.inverted and follows_endpoint(config) and not inputs.allow_endpoint_check:
            raise PermanentError(
                f"health check {inputs.health_check_id} is {config.get('Type')}"
                + (" over child checks" if config.get("ChildHealthChecks") else "")
                + ": inverted while its endpoint is down it reports healthy and draws traffic back; invert a "
                "switch (a CALCULATED check without children, which is always healthy) that the PRIMARY record's "
                "check depends on, or set allow_endpoint_check",
                provider="route53",
                code="EndpointHealthCheck",
            )
        # Only Inverted is sent, so a concurrent change to another field of the check is neither lost nor a
        # conflict (HealthCheckVersion is left out on purpose).
        ctx.aws("route53", "update_health_check", HealthCheckId=inputs.health_check_id, Inverted=inputs.inverted)
        out["changed"] = True
        return out


class GetHealthCheckInputs(Inputs):
    health_check_id: str | None = Field(description="Health check id; empty: reported as not existing")


class GetHealthCheck(Action[GetHealthCheckInputs]):
    name = "route53.get_health_check"
    summary = "Read a health check (for preconditions and verify): exists, type, inverted, disabled, invertible"
    inputs = GetHealthCheckInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if not inputs.get("health_check_id"):
            return []
        return [read("route53", "get_health_check", HealthCheckId=inputs.get("health_check_id"))]

    def run(self, inputs: GetHealthCheckInputs, ctx: ActionContext) -> dict[str, Any]:
        # `invertible`: inverting it cannot draw traffic to a down endpoint. True when no id is given, so a
        # precondition can say "the switch, if any, is a switch".
        missing = {"exists": False, "type": None, "inverted": None, "disabled": None}
        if not inputs.health_check_id:
            return missing | {"invertible": True}
        try:
            config = health_check(ctx, inputs.health_check_id)["HealthCheckConfig"]
        except ProviderError as e:
            if e.code == "NoSuchHealthCheck":
                return missing | {"invertible": False}
            raise
        return {
            "exists": True,
            "type": config.get("Type"),
            "inverted": bool(config.get("Inverted", False)),
            "disabled": bool(config.get("Disabled", False)),
            "invertible": not follows_endpoint(config),
        }
