"""Deciding, without I/O: which alert starts which runbook, with which parameters and idempotency key."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from scaler.alerts.payload import Alert, Payload
from scaler.alerts.rules import Action, Rule, render_params
from scaler.runbook.records import Trigger
from scaler.template import TemplateError


@dataclass(frozen=True)
class Planned:
    """One run to start: the runbook, its rendered parameters (alert text in them marked `Data`, never a secret
    reference) and the idempotency key."""

    fingerprint: str
    status: str
    rule: str
    runbook: str
    params: dict[str, str]
    key: str
    auto: bool
    dry_run: bool
    trigger: Trigger


Result = Literal["started", "pending", "queued", "duplicate", "unmatched", "error"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert: a run started/pending/queued, a duplicate, no rule, or an error."""

    fingerprint: str
    status: str
    result: Result
    rule: str | None = None
    runbook: str | None = None
    key: str | None = None
    run_id: str | None = None
    detail: str = ""

    def as_json(self) -> dict[str, str | None]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def idempotency_key(alert: Alert) -> str:
    """fingerprint + startsAt + status: one occurrence of one alert, firing or resolved.

    HA pairs and retries redeliver the same alert; a new occurrence (it resolved and fired again) has a new
    startsAt and so a new key.
    """
    starts = alert.startsAt.astimezone(UTC).isoformat()
    return f"alertmanager:{alert.fingerprint}:{starts}:{alert.status}"


def _why(alert: Alert) -> str:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"{name} {alert.status} since {alert.startsAt.astimezone(UTC).isoformat()}"
    text += f" [{alert.fingerprint}]" + (f": {summary}" if summary else "")
    return text[:500]


def plan(
    payload: Payload, rules: Iterable[Rule], *, kind: str = "alertmanager", who: str | None = None
) -> list[Planned | Outcome]:
    """For each alert, the first matching rule's firing or on_resolved action, or why nothing runs."""
    rules = list(rules)
    who = who or f"alertmanager/{payload.receiver}"
    out: list[Planned | Outcome] = []
    for alert in payload.alerts:
        # First match wins, as in an Alertmanager route tree without `continue`: one alert, one runbook.
        rule = next((r for r in rules if r.matches(alert.labels)), None)
        if rule is None:
            out.append(Outcome(alert.fingerprint, alert.status, "unmatched", detail="no rule matches"))
            continue
        action: Action | None = rule if alert.status == "firing" else rule.on_resolved
        if action is None:
            out.append(
                Outcome(alert.fingerprint, alert.status, "unmatched", rule=rule.name, detail="no on_resolved")
            )
            continue
        key = idempotency_key(alert)
        try:
            params = render_params(action.params, alert, payload.receiver)
        except TemplateError as e:
            out.append(Outcome(alert.fingerprint, alert.status, "error", rule.name, action.runbook, key,
                               detail=f"params: {e}"))
            continue
        trigger = Trigger(kind=kind, who=who, why=f"rule {rule.name}: {_why(alert)}", key=key)
        out.append(Planned(alert.fingerprint, alert.status, rule.name, action.runbook, params, key,
                           action.auto, action.dry_run, trigger))
    return out
