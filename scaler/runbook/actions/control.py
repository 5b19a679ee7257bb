"""Control-flow actions: wait a fixed time, and the manual approval gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from scaler.runbook.actions.base import Action, ActionContext, Inputs
from scaler.runbook.records import ProviderCall
from scaler.units import Seconds


class WaitInputs(Inputs):
    seconds: Seconds = Field(description="How long to wait, e.g. 30s, 5m")


class Wait(Action[WaitInputs]):
    name = "wait"
    summary = "Wait a fixed time (e.g. for caches and TTLs to expire)"
    inputs = WaitInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return []

    def run(self, inputs: WaitInputs, ctx: ActionContext) -> dict[str, Any]:
        ctx.sleep(inputs.seconds)
        return {"waited": inputs.seconds}


class ApproveInputs(Inputs):
    message: str = Field("", description="What the approver is asked to confirm")
    approvers: list[str] = Field(default_factory=list, description="Who may approve; empty means anyone")


class Approve(Action[ApproveInputs]):
    name = "approve"
    summary = "Stop until a person approves (service.approve / `scaler runbook approve RUN_ID`)"
    inputs = ApproveInputs
    mutates = False
    gate = True

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return []

    def run(self, inputs: ApproveInputs, ctx: ActionContext) -> dict[str, Any]:
        # The engine records the approval itself; reaching here means the gate was already approved.
        return {}
