"""A run's next move, decided from its journal record alone: a pure function, so resume is "decide again"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scaler.runbook.actions import REGISTRY
from scaler.runbook.model import Runbook
from scaler.runbook.records import TERMINAL, RunRecord

MoveKind = Literal["await", "check", "execute", "rollback", "compensate", "finish"]


@dataclass(frozen=True)
class Move:
    kind: MoveKind
    step: str | None = None  # the step to execute / compensate / wait on
    status: str | None = None  # finish: the run's final status
    error: str | None = None


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
        if rec.status == "succeeded":
            continue
        if rec.status == "failed":
            policy = runbook.policy(step)
            if policy == "continue":
                continue
            error = f"step {step.id}: {rec.error}"
            if policy == "abort":
                return Move("finish", status="failed", error=error)
            return Move("rollback", step=step.id, error=error)
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
    if broken:
        return Move(
            "finish",
            status="failed",
            error=f"{run.error}; rollback incomplete, compensation failed for: {', '.join(broken)}",
        )
    return Move("finish", status="rolled_back", error=run.error)
