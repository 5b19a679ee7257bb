"""What the runbook service hands back: triggers, runs, steps, plans and runbook summaries as frozen data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Run statuses. "waiting" holds for an approval; "rolling_back" is running compensations.
ACTIVE = frozenset({"running", "waiting", "rolling_back"})
TERMINAL = frozenset({"succeeded", "failed", "rolled_back", "refused", "planned"})
START_GATE = "start"  # waiting_on value of a run started with require_approval=True
# Step statuses besides pending | running | succeeded | failed. A best-effort step that failed is done (the run
# went on without it); a step whose `when` was false is done without having run.
BEST_EFFORT_FAILED = "failed (best effort)"
SKIPPED = "skipped"
DONE = frozenset({"succeeded", BEST_EFFORT_FAILED, SKIPPED})


@dataclass(frozen=True)
class Trigger:
    """Who or what started a run, and why. `key` makes a start idempotent: a repeat returns the first run."""

    kind: str  # "manual" | "alertmanager" | "health-rule"
    who: str  # user name, alert receiver, rule name
    why: str  # free text: alert summary, rule evidence
    key: str | None = None  # idempotency key: a second start with the same key returns the first run


@dataclass(frozen=True)
class ProviderCall:
    """One call an action would make: `route53 change_resource_record_sets {...}`. Args are redacted."""

    service: str
    operation: str
    args: Mapping[str, Any] = field(default_factory=dict)
    mutates: bool = True

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(frozen=True)
class PlannedStep:
    id: str
    action: str
    inputs: Mapping[str, Any]  # redacted; references to earlier outputs stay as "{{ steps.x.y }}"
    calls: tuple[ProviderCall, ...]
    on_failure: str
    compensate: tuple[ProviderCall, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What a run would do with these parameters, without calling any provider."""

    runbook: str
    params: Mapping[str, Any]  # redacted
    scope: str
    checks: tuple[ProviderCall, ...]
    steps: tuple[PlannedStep, ...]


@dataclass(frozen=True)
class StepRecord:
    id: str
    action: str
    status: str  # pending | running | succeeded | failed | failed (best effort) | skipped
    attempts: int = 0
    outputs: Mapping[str, Any] | None = None  # redacted; None until the action completed
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    compensation: str | None = None  # None | running | done | failed
    compensation_error: str | None = None


@dataclass(frozen=True)
class Approval:
    gate: str  # a step id, or "start" for require_approval
    who: str
    at: float


@dataclass(frozen=True)
class RunRecord:
    """One run as the journal has it right now."""

    id: str
    runbook: str
    status: str  # running | waiting | rolling_back | succeeded | failed | rolled_back | refused | planned
    params: Mapping[str, Any]  # secrets shown as "***" (or their env:/file: reference)
    trigger: Trigger
    scope: str
    dry_run: bool
    created_at: float
    updated_at: float
    waiting_on: str | None = None
    error: str | None = None
    steps: tuple[StepRecord, ...] = ()
    approvals: tuple[Approval, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> StepRecord:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def approved(self, gate: str) -> bool:
        return any(a.gate == gate for a in self.approvals)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What went wrong without changing how the run ends: each best-effort step that failed, and each
        best-effort compensation that failed, as 'step: error'."""
        return tuple(
            [f"{s.id}: {s.error}" for s in self.steps if s.status == BEST_EFFORT_FAILED]
            + [
                f"{s.id} (undo): {s.compensation_error}"
                for s in self.steps
                if s.compensation == BEST_EFFORT_FAILED
            ]
        )


@dataclass(frozen=True)
class ParamInfo:
    name: str
    type: str
    required: bool
    secret: bool
    description: str = ""
    default: Any = None  # secret defaults are env:/file: references, never values


@dataclass(frozen=True)
class RunbookInfo:
    name: str
    description: str
    path: str
    parameters: tuple[ParamInfo, ...]
    steps: tuple[str, ...]
