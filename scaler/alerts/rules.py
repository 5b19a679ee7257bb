"""Trigger rules: which alerts start which runbook, with parameters rendered from the alert's contents."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from typing import Annotated, Any, NoReturn

from pydantic import Field, field_validator, model_validator

from scaler import template
from scaler.alerts.payload import Alert
from scaler.runbook.origin import Data
from scaler.yamlio import Strict

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)]

# What a rule's parameter may refer to: "{{ labels.region }}", "{{ annotations.summary }}", "{{ status }}".
# The same lookups-only engine as runbooks: alert contents come from whoever can post to Alertmanager, so
# nothing in them is ever evaluated, and a label's text is spliced in as it is, never rendered again (nor read as
# a secret's reference: see render_params).
ALERT = template.Grammar(keyed=("labels", "annotations"), bare=("status", "fingerprint", "startsAt", "receiver"))


def alert_scope(alert: Alert, receiver: str) -> dict[str, Any]:
    """The names an alert offers to parameter templates (see ALERT)."""
    return {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "status": alert.status,
        "fingerprint": alert.fingerprint,
        "startsAt": alert.startsAt.astimezone(UTC).isoformat(),
        "receiver": receiver,
    }


def _absent(expr: str) -> NoReturn:
    # Only labels.NAME and annotations.NAME can be absent: the grammar gives the other names no fields.
    where, _, name = expr.partition(".")
    raise template.TemplateError(f"alert has no {where.removesuffix('s')} {name!r}")


def render_params(params: Mapping[str, str], alert: Alert, receiver: str) -> dict[str, str]:
    """Fill every parameter's references from one alert; TemplateError names a missing label.

    A value with a reference holds the alert's text, so it is `Data`: never read as a secret's `env:`/`file:`
    reference, whether the alert gave all of it (`{{ labels.url }}` = "file:/etc/shadow") or a part
    (`{{ labels.kind }}:{{ labels.name }}`). Only a value written out whole in the rule can be a reference.
    """
    scope = alert_scope(alert, receiver)
    out: dict[str, str] = {}
    for name, value in params.items():
        text = str(template.render(value, scope, missing=_absent, grammar=ALERT))
        out[name] = Data(text) if next(template.references(value), None) is not None else text
    return out


class Action(Strict):
    """A runbook to start and how: right away, or as a pending run that someone must approve."""

    runbook: Name = Field(description="Runbook name (a file <name>.yaml in the runbooks directory)")
    params: dict[Name, str] = Field(
        default_factory=dict, description="Runbook parameters; values are templates over the alert"
    )
    auto: bool = Field(False, description="true: run now; false (default): create a run pending approval")
    dry_run: bool = Field(False, description="Plan and journal the run without calling any provider")

    @field_validator("params")
    @classmethod
    def _templates(cls, params: dict[str, str]) -> dict[str, str]:
        # Checked at load, so a typo is a config error rather than a failed start mid-incident.
        for value in params.values():
            try:
                template.check(value, ALERT)
            except template.TemplateError:
                raise ValueError(f"unknown template in {value!r}: use {ALERT.usage()}") from None
        return params


class Rule(Action):
    """Alerts whose labels match start `runbook`; when they resolve, `on_resolved` (if set) starts."""

    name: Name = Field(description="Rule name, shown in the trigger and the audit log")
    match: dict[LabelName, str] = Field(
        default_factory=dict, description="Labels that must equal these values"
    )
    match_re: dict[LabelName, str] = Field(
        default_factory=dict, description="Labels that must fully match these regular expressions"
    )
    on_resolved: Action | None = Field(None, description="Recovery runbook started when the alert resolves")

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, patterns: dict[str, str]) -> dict[str, str]:
        for label, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{label}: not a valid regular expression: {e}") from None
        return patterns

    @model_validator(mode="after")
    def _some_matcher(self) -> Rule:
        # A rule without matchers would fire every runbook on every alert of the receiver.
        if not self.match and not self.match_re:
            raise ValueError("a rule needs at least one matcher in match or match_re")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        # Alertmanager anchors its regex matchers; so do we, so the same matcher means the same here.
        return all(labels.get(k) == v for k, v in self.match.items()) and all(
            re.fullmatch(p, labels.get(k, "")) is not None for k, p in self.match_re.items()
        )


def check_rules(rules: list[Rule]) -> list[Rule]:
    """Rule names must be unique: they appear in triggers and audit lines."""
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise ValueError(f"rule {i}: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return rules
