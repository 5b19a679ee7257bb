"""A run's next move, decided from its journal record alone: a pure function, so resume is "decide again"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scaler import template
from scaler.runbook.actions import REGISTRY
from scaler.runbook.model import Runbook, Step
from scaler.runbook.records import BEST_EFFORT_FAILED, DONE, TERMINAL, RunRecord

MoveKind = Literal["await", "check", "execute", "skip", "rollback", "compensate", "finish"]
_FALSE = frozenset({"", "false", "no", "off", "0", "none", "null"})


@dataclass(frozen=True)
class Move:
    kind: MoveKind
    step: str | None = None  # the step to execute / compensate / wait on
    status: str | None = None  # finish: the run's final status
    error: str | None = None


def scope(run: RunRecord, params: Mapping[str, Any]) -> dict[str, Any]:
    """What templates can see: params, completed steps' outputs, who started the run and why, and the
    best-effort failures so far (`run.warnings`, text: 'none' while there are none)."""
    return {
        "params": params,
        "steps": {s.id: dict(s.outputs) for s in run.steps if s.outputs is not None},
        "run": {
            "id": run.id,
            "runbook": run.runbook,
            "trigger": {"kind": run.trigger.kind, "who": run.trigger.who, "why": run.trigger.why},
            "warnings": "; ".join(run.warnings) or "none",
        },
    }


def wanted(step: Step, run: RunRecord) -> bool:
    """Whether a step's `when` holds, read from the journal (parameters as journaled, secrets masked).

    Set and not false: `true`, 'on', 'app.example.com', 3 hold; `false`, 'off', '0', '', null do not. A reference
    to outputs a step never produced (it was skipped, or failed at best effort) does not hold either.
    """
    if step.when is None:
        return True
    try:
        value = template.render(step.when, scope(run, run.params))
    except template.TemplateError:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def next_move(runbook: Runbook, run: RunRecord, *, checked: bool) -> Move:
    """What to do next. A finished step is never chosen again, so a resumed run continues where it stopped."""
    if run.status in TERMINAL:
        return Move("finish", status=run.status, error=run.error)
    if run.status == "rolling_back":
        return _rollback_move(runbook, run)
    if run.status == "waiting" and run.waiting_on and not run.approved(run.waiting_on):
        return Move("await", step=run.waiting_on)
    if not checked:
        return Move("check")
    for step in runbook.steps:
        rec = run.step(step.id)
        if rec.status in DONE:  # succeeded, skipped, or failed at best effort: the run goes on either way
            continue
        if rec.status == "failed":
            policy = runbook.policy(step)
            if policy == "continue":
                continue
            error = f"step {step.id}: {rec.error}"
            if policy == "abort":
                return Move("finish", status="failed", error=error)
            return Move("rollback", step=step.id, error=error)
        if not wanted(step, run):
            return Move("skip", step=step.id)
        if REGISTRY[step.action].gate and not run.approved(step.id):
            return Move("await", step=step.id)
        return Move("execute", step=step.id)
    return Move("finish", status="succeeded")


def _rollback_move(runbook: Runbook, run: RunRecord) -> Move:
    """Compensate, newest first, every step whose action completed (it recorded outputs)."""
    for step in reversed(runbook.steps):
        rec = run.step(step.id)
        if rec.outputs is not None and step.compensate and rec.compensation in (None, "running"):
            return Move("compensate", step=step.id)
    broken = [s.id for s in run.steps if s.compensation == "failed"]
    # A best-effort step's undo failing is told, but does not make the rollback incomplete.
    loose = [s.id for s in run.steps if s.compensation == BEST_EFFORT_FAILED]
    note = f"; not undone (best effort): {', '.join(loose)}" if loose else ""
    if broken:
        return Move(
            "finish",
            status="failed",
            error=f"{run.error}; rollback incomplete, compensation failed for: {', '.join(broken)}{note}",
        )
    return Move("finish", status="rolled_back", error=f"{run.error}{note}" if note else run.error)
