"""HTTP actions: a Slack-compatible webhook notification, and a health check needing N successes in a row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from scaler.errors import TransientError
from scaler.notify import slack_payload
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.errors import StepTimeout
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds


class NotifyInputs(Inputs):
    url: str = Field(description="Incoming-webhook URL (declare its parameter `secret: true`)")
    text: str
    severity: Literal["info", "warning", "critical"] = "info"
    title: str | None = None


class Notify(Action[NotifyInputs]):
    name = "notify.webhook"
    summary = "POST a Slack-compatible message (text + colored attachment) with a severity"
    inputs = NotifyInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            call(
                "http",
                "POST",
                url=inputs.get("url"),
                severity=inputs.get("severity", "info"),
                text=inputs.get("text"),
            )
        ]

    @staticmethod
    def payload(inputs: NotifyInputs, run_id: str) -> dict[str, Any]:
        return slack_payload(inputs.severity, inputs.title or "scaler runbook", inputs.text, {"run": run_id})

    def run(self, inputs: NotifyInputs, ctx: ActionContext) -> dict[str, Any]:
        # A webhook cannot be asked "did you get this already?"; the idempotency header lets a receiver
        # that cares drop the duplicate a retry after a lost response would send.
        got = ctx.http(
            "POST",
            inputs.url,
            body=self.payload(inputs, ctx.run_id),
            headers={"Idempotency-Key": ctx.token("notify")},
        )
        return {"status": got.status, "severity": inputs.severity}


class HealthInputs(Inputs):
    url: str
    successes: int = Field(3, ge=1, le=1000, description="Consecutive good answers needed")
    interval: PositiveSeconds = Field(1.0, description="Seconds between probes")
    expect_status: list[int] = Field(default_factory=list, description="Good statuses; empty means 200-399")


class HealthCheck(Action[HealthInputs]):
    name = "http.health_check"
    summary = "Probe a URL until N consecutive good answers, failing at the step's timeout"
    inputs = HealthInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [read("http", "GET", url=inputs.get("url"), successes=inputs.get("successes", 3))]

    def run(self, inputs: HealthInputs, ctx: ActionContext) -> dict[str, Any]:
        streak = probes = 0
        last: int | str = "none"
        while True:
            probes += 1
            try:
                status = ctx.http("GET", inputs.url, check=False, retry=False).status
                good = status in inputs.expect_status if inputs.expect_status else 200 <= status < 400
                last = status
            except TransientError as e:
                good, last = False, e.code or "connection"
            # A bad answer resets the streak: 2 good, 1 bad, 3 good -> done at probe 6 when N=3.
            streak = streak + 1 if good else 0
            if streak >= inputs.successes:
                return {"successes": streak, "probes": probes, "last_status": last}
            try:
                ctx.sleep(inputs.interval)
            except StepTimeout:
                raise StepTimeout(
                    f"health check: {streak}/{inputs.successes} consecutive successes after "
                    f"{probes} probes, last answer {last}"
                ) from None
