"""Maintenance mode on an ALB: a listener rule answering every path with a fixed 503, added or removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.records import ProviderCall

TAG = "scaler:maintenance"  # marks the rule as ours, so we never touch rules someone else made


class MaintenanceInputs(Inputs):
    listener_arn: str
    enabled: bool = Field(description="true adds the 503 rule, false removes it")
    status_code: int = Field(503, ge=200, le=599)
    body: str = Field("Down for maintenance", max_length=1024)
    content_type: str = "text/plain"
    path: str = Field("/*", description="Path pattern the rule matches")
    priority: int | None = Field(None, ge=1, le=50000, description="Default: the lowest free number")


def flag(value: Any) -> bool | None:
    """True/False from a bool or its usual spellings; None while it is still an unresolved template."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "on", "yes", "1") else False if text in ("false", "off", "no", "0") else None


def our_rules(ctx: ActionContext, listener_arn: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all rules of the listener, the maintenance rules among them)."""
    rules = ctx.aws("elbv2", "describe_rules", ListenerArn=listener_arn)["Rules"]
    arns = [r["RuleArn"] for r in rules if not r.get("IsDefault")]
    tagged: set[str] = set()
    for i in range(0, len(arns), 20):  # DescribeTags takes at most 20 ARNs
        for d in ctx.aws("elbv2", "describe_tags", ResourceArns=arns[i : i + 20])["TagDescriptions"]:
            if any(t["Key"] == TAG for t in d.get("Tags", [])):
                tagged.add(d["ResourceArn"])
    return rules, [r for r in rules if r["RuleArn"] in tagged]


def lowest_free(rules: list[dict[str, Any]]) -> int:
    """Lower numbers win on an ALB; 'default' is last. Rules at 1, 2, 4 -> 3."""
    used = {int(r["Priority"]) for r in rules if str(r.get("Priority", "")).isdigit()}
    n = 1
    while n in used:
        n += 1
    return n


class MaintenanceRule(Action[MaintenanceInputs]):
    name = "elb.maintenance_rule"
    summary = "Add (enabled: true) or remove the fixed-503 maintenance rule on an ALB listener"
    inputs = MaintenanceInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        found = [
            read("elbv2", "describe_rules", ListenerArn=inputs.get("listener_arn")),
            read("elbv2", "describe_tags"),
        ]
        add = call(
            "elbv2",
            "create_rule",
            ListenerArn=inputs.get("listener_arn"),
            Priority=inputs.get("priority") or "<lowest free>",
            StatusCode=inputs.get("status_code", 503),
        )
        remove = call("elbv2", "delete_rule", RuleArn="<the maintenance rule>")
        wanted = flag(inputs.get("enabled"))
        # Not known before the run (a template over earlier outputs): show both possibilities.
        return [*found, add] if wanted else [*found, remove] if wanted is False else [*found, add, remove]

    def run(self, inputs: MaintenanceInputs, ctx: ActionContext) -> dict[str, Any]:
        rules, ours = our_rules(ctx, inputs.listener_arn)
        was_enabled = ctx.memo("was_enabled", lambda: bool(ours))
        out: dict[str, Any] = {
            "was_enabled": was_enabled,
            "enabled": inputs.enabled,
            "changed": False,
            "rule_arn": ours[0]["RuleArn"] if ours else None,
        }
        if inputs.enabled and not ours:
            priority = inputs.priority or lowest_free(rules)
            created = ctx.aws(
                "elbv2",
                "create_rule",
                ListenerArn=inputs.listener_arn,
                Priority=priority,
                Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": [inputs.path]}}],
                Actions=[
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {
                            "StatusCode": str(inputs.status_code),
                            "ContentType": inputs.content_type,
                            "MessageBody": inputs.body,
                        },
                    }
                ],
                # Tagged in the same call, so no crash can leave an untagged rule we would not recognise.
                Tags=[{"Key": TAG, "Value": ctx.run_id}],
            )["Rules"][0]
            out.update(changed=True, rule_arn=created["RuleArn"], priority=priority)
        elif not inputs.enabled and ours:
            for r in ours:
                ctx.aws("elbv2", "delete_rule", RuleArn=r["RuleArn"])
            out.update(changed=True, rule_arn=None)
        return out
