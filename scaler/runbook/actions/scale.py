"""Scaling a standby: EC2 Auto Scaling desired capacity and ECS service desired count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from scaler.errors import PermanentError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds


class AsgInputs(Inputs):
    group: str = Field(description="Auto Scaling group name")
    desired: int = Field(ge=0, description="Desired capacity, instances")
    wait_in_service: bool = Field(False, description="Wait until this many instances are InService")
    interval: PositiveSeconds = Field(5.0, description="Seconds between polls while waiting")


def describe_group(ctx: ActionContext, name: str) -> dict[str, Any]:
    groups = ctx.aws("autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[name])
    if not groups["AutoScalingGroups"]:
        raise PermanentError(f"auto scaling group {name} not found", provider="autoscaling", code="NotFound")
    return groups["AutoScalingGroups"][0]


def in_service(group: dict[str, Any]) -> int:
    return sum(1 for i in group.get("Instances", []) if i.get("LifecycleState") == "InService")


class AsgDesired(Action[AsgInputs]):
    name = "asg.set_desired"
    summary = "Set an Auto Scaling group's desired capacity; outputs the previous one"
    inputs = AsgInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read("autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[inputs.get("group")]),
            call(
                "autoscaling",
                "set_desired_capacity",
                AutoScalingGroupName=inputs.get("group"),
                DesiredCapacity=inputs.get("desired"),
            ),
        ]

    def run(self, inputs: AsgInputs, ctx: ActionContext) -> dict[str, Any]:
        group = describe_group(ctx, inputs.group)
        lo, hi = int(group["MinSize"]), int(group["MaxSize"])
        if not lo <= inputs.desired <= hi:
            # AWS rejects this too (moto does not), so fail the same way everywhere.
            raise PermanentError(
                f"{inputs.group}: desired {inputs.desired} outside min {lo} .. max {hi}",
                provider="autoscaling",
                code="ValidationError",
            )
        previous = ctx.memo("previous", lambda: int(group["DesiredCapacity"]))
        changed = int(group["DesiredCapacity"]) != inputs.desired
        if changed:
            ctx.aws(
                "autoscaling",
                "set_desired_capacity",
                AutoScalingGroupName=inputs.group,
                DesiredCapacity=inputs.desired,
                HonorCooldown=False,
            )
        # Look again right after a change: instances often come up before the first interval is over.
        ready = in_service(describe_group(ctx, inputs.group) if changed and inputs.wait_in_service else group)
        while inputs.wait_in_service and ready < inputs.desired:
            ctx.sleep(inputs.interval)
            ready = in_service(describe_group(ctx, inputs.group))
        return {"previous": previous, "desired": inputs.desired, "changed": changed, "in_service": ready}


class EcsInputs(Inputs):
    cluster: str
    service: str
    desired: int = Field(ge=0, description="Desired task count")


class EcsDesired(Action[EcsInputs]):
    name = "ecs.set_desired"
    summary = "Set an ECS service's desired count; outputs the previous one"
    inputs = EcsInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read("ecs", "describe_services", cluster=inputs.get("cluster"), services=[inputs.get("service")]),
            call(
                "ecs",
                "update_service",
                cluster=inputs.get("cluster"),
                service=inputs.get("service"),
                desiredCount=inputs.get("desired"),
            ),
        ]

    def run(self, inputs: EcsInputs, ctx: ActionContext) -> dict[str, Any]:
        found = ctx.aws("ecs", "describe_services", cluster=inputs.cluster, services=[inputs.service])
        if not found["services"]:
            raise PermanentError(
                f"ecs service {inputs.cluster}/{inputs.service} not found",
                provider="ecs",
                code="ServiceNotFoundException",
            )
        have = int(found["services"][0]["desiredCount"])
        previous = ctx.memo("previous", lambda: have)
        if have != inputs.desired:
            ctx.aws(
                "ecs",
                "update_service",
                cluster=inputs.cluster,
                service=inputs.service,
                desiredCount=inputs.desired,
            )
        return {"previous": previous, "desired": inputs.desired, "changed": have != inputs.desired}
