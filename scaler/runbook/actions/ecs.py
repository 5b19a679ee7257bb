"""ECS rollback: a service back to the task definition it ran before, waiting until the deployment settles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from scaler.errors import PermanentError, ProviderError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.errors import StepTimeout
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds

# On a service: the task definition a scaler rollback put there. While the service still runs it, the version
# is a rollback, and a second alert must not roll it back again (that would go one version further back).
MARK = "scaler:rolled-back-to"


def service(ctx: ActionContext, cluster: str, name: str) -> dict[str, Any] | None:
    found = ctx.aws("ecs", "describe_services", cluster=cluster, services=[name], include=["TAGS"])["services"]
    return found[0] if found and found[0].get("status") != "INACTIVE" else None


def must(ctx: ActionContext, cluster: str, name: str) -> dict[str, Any]:
    svc = service(ctx, cluster, name)
    if svc is None:
        raise PermanentError(f"ecs service {cluster}/{name} not found", provider="ecs", code="ServiceNotFoundException")
    return svc


def marks(svc: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in svc.get("tags") or []}


def rolled_back(svc: Mapping[str, Any]) -> bool:
    """The service runs what a scaler rollback put there."""
    return marks(svc).get(MARK) == svc.get("taskDefinition")


def family_revision(task_definition: str) -> tuple[str, int] | None:
    """'arn:...:task-definition/web:7' or 'web:7' -> ('web', 7); None for anything else."""
    family, _, number = task_definition.rsplit("/", 1)[-1].rpartition(":")
    return (family, int(number)) if family and number.isdigit() else None


def short(task_definition: str) -> str:
    """'arn:aws:ecs:us-east-1:123456789012:task-definition/web:7' -> 'web:7'."""
    return task_definition.rsplit("/", 1)[-1]


def task_definition(ctx: ActionContext, name: str) -> dict[str, Any]:
    return ctx.aws("ecs", "describe_task_definition", taskDefinition=name)["taskDefinition"]


def previous(ctx: ActionContext, svc: Mapping[str, Any]) -> str:
    """The task definition to go back to.

    A deployment still in progress has the old one running beside it (status ACTIVE): that one. Once the
    new deployment completed, the old is gone from `deployments`, so: the family's highest ACTIVE revision
    below the current one (web:7 running, 3, 5 and 6 ACTIVE -> web:6).
    """
    now = str(svc["taskDefinition"])
    older = [d for d in svc.get("deployments") or [] if d.get("status") != "PRIMARY" and d.get("taskDefinition")]
    older = [d for d in older if d["taskDefinition"] != now]
    if older:
        return str(max(older, key=lambda d: str(d.get("createdAt", "")))["taskDefinition"])
    current = task_definition(ctx, now)
    family, revision = str(current["family"]), int(current["revision"])
    found: list[tuple[int, str]] = []
    args: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE"}
    while True:
        page = ctx.aws("ecs", "list_task_definitions", **args)
        for arn in page.get("taskDefinitionArns", []):
            parsed = family_revision(arn)
            if parsed is not None and parsed[0] == family and parsed[1] < revision:
                found.append((parsed[1], arn))
        if not page.get("nextToken"):
            break
        args["nextToken"] = page["nextToken"]
    if not found:
        raise PermanentError(
            f"ecs: no ACTIVE revision of {family} before {revision} to roll back to",
            provider="ecs",
            code="NoPreviousRevision",
        )
    return max(found)[1]


def settle(ctx: ActionContext, cluster: str, name: str, target: str, interval: float) -> dict[str, Any]:
    """Wait until the service's deployment settles: rolloutState COMPLETED (FAILED fails the step).

    Services without a rollout state (other deployment controllers, a Classic Load Balancer) count as settled
    when one deployment is left and it runs its desired count.
    """
    while True:
        svc = must(ctx, cluster, name)
        if svc.get("taskDefinition") != target:
            raise PermanentError(
                f"ecs service {cluster}/{name} now runs {svc.get('taskDefinition')}: changed during the rollback",
                provider="ecs",
                code="ChangedMeanwhile",
            )
        deployments = svc.get("deployments") or []
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
        state = primary.get("rolloutState")
        if state == "FAILED":
            raise PermanentError(
                f"ecs service {cluster}/{name}: rollout failed ({primary.get('rolloutStateReason', 'no reason')})",
                provider="ecs",
                code="RolloutFailed",
            )
        if state == "COMPLETED" or (
            state is None and len(deployments) <= 1 and svc.get("runningCount") == svc.get("desiredCount")
        ):
            return svc
        try:
            ctx.sleep(interval)
        except StepTimeout:
            raise StepTimeout(
                f"ecs service {cluster}/{name}: rollout still {state or 'in progress'} when the step's time ran out"
            ) from None


class RollbackInputs(Inputs):
    cluster: str
    service: str
    to: str | None = Field(
        None, description="Task definition to go to (family:revision or ARN); default: the previous one"
    )
    interval: PositiveSeconds = Field(10.0, description="Seconds between looks while the deployment settles")


class Rollback(Action[RollbackInputs]):
    name = "ecs.rollback"
    summary = "Roll an ECS service back to the task definition it ran before and wait for rolloutState COMPLETED"
    inputs = RollbackInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        cluster, name = inputs.get("cluster"), inputs.get("service")
        # Built directly: call()'s own first parameter is named `service` too.
        update = {"cluster": cluster, "service": name, "taskDefinition": inputs.get("to") or "<the previous one>"}
        return [
            read("ecs", "describe_services", cluster=cluster, services=[name]),
            read("ecs", "list_task_definitions", status="ACTIVE"),
            ProviderCall("ecs", "update_service", update),
            call("ecs", "tag_resource", key=MARK),
            read("ecs", "describe_services", cluster=cluster, services=[name]),
        ]

    def run(self, inputs: RollbackInputs, ctx: ActionContext) -> dict[str, Any]:
        svc = must(ctx, inputs.cluster, inputs.service)
        now = str(svc["taskDefinition"])

        def choose() -> dict[str, str]:
            to = task_definition(ctx, inputs.to)["taskDefinitionArn"] if inputs.to else previous(ctx, svc)
            return {"from": now, "to": str(to)}

        # Chosen once: a re-run after a crash finds the rollback done (or still to do), never a second one.
        plan = ctx.memo("rollback", choose)
        changed = False
        if now == plan["from"] and now != plan["to"]:
            ctx.aws("ecs", "update_service", cluster=inputs.cluster, service=inputs.service, taskDefinition=plan["to"])
            changed = True
        elif now != plan["to"]:
            raise PermanentError(
                f"ecs service {inputs.cluster}/{inputs.service} runs {now}, neither {plan['from']} nor {plan['to']}: "
                "someone else changed it; not rolled back",
                provider="ecs",
                code="ChangedMeanwhile",
            )
        marked = self.mark(ctx, svc, plan["to"]) if changed or plan["from"] != plan["to"] else False
        done = settle(ctx, inputs.cluster, inputs.service, plan["to"], inputs.interval)
        primary = next((d for d in done.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
        return {
            "cluster": inputs.cluster,
            "service": inputs.service,
            "previous": plan["from"],
            "task_definition": plan["to"],
            "changed": changed,
            "marked": marked,
            "rollout_state": primary.get("rolloutState"),
            "running": done.get("runningCount"),
            "summary": f"ecs {inputs.cluster}/{inputs.service}: {short(plan['from'])} -> {short(plan['to'])}",
        }

    @staticmethod
    def mark(ctx: ActionContext, svc: Mapping[str, Any], target: str) -> bool:
        """Tag the service with the version rolled back to, unless it says so already. A refused tag (an old
        ARN format, no ecs:TagResource right) does not undo a rollback that happened: it is logged."""
        if marks(svc).get(MARK) == target:
            return True
        try:
            ctx.aws("ecs", "tag_resource", resourceArn=svc["serviceArn"], tags=[{"key": MARK, "value": target}])
        except ProviderError as e:
            if e.transient:
                raise
            ctx.log(f"could not tag {svc['serviceArn']} with {MARK}: {e}; a second alert could roll back again")
            return False
        return True


def status(ctx: ActionContext, cluster: str, name: str) -> dict[str, Any]:
    svc = service(ctx, cluster, name)
    if svc is None:
        return {
            "exists": False,
            "summary": f"ecs {cluster}/{name} (not found)",
            "current": None,
            "rolled_back": False,
            "rollout_state": None,
        }
    primary = next((d for d in svc.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
    return {
        "exists": True,
        "summary": f"ecs {cluster}/{name} on {short(str(svc.get('taskDefinition')))}",
        "current": svc.get("taskDefinition"),
        "rolled_back": rolled_back(svc),
        "rollout_state": primary.get("rolloutState"),
    }
