"""A RunbookService stand-in that records starts and, like the journal, returns the first run for a key."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from scaler.runbook.service import Trigger


@dataclass(frozen=True)
class FakeRun:
    id: str
    runbook: str
    params: dict[str, str]
    trigger: Trigger
    dry_run: bool
    status: str  # "waiting" (for approve) or "succeeded"


@dataclass
class FakeRunbookService:
    """start/approve/status with the real signatures; `fail` makes start raise; `gate` makes it block."""

    fail: Exception | None = None
    gate: threading.Event | None = None
    calls: list[FakeRun] = field(default_factory=list)  # every start call, duplicates included
    runs: dict[str, FakeRun] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self,
        runbook: str,
        params: dict[str, str],
        *,
        trigger: Trigger,
        dry_run: bool = False,
        require_approval: bool = False,
    ) -> FakeRun:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            run = FakeRun(f"run-{len(self.runs) + 1}", runbook, dict(params), trigger, dry_run,
                          "waiting" if require_approval else "succeeded")
            self.calls.append(run)
            if self.fail is not None:
                raise self.fail
            if trigger.key is not None and trigger.key in self.by_key:
                return self.runs[self.by_key[trigger.key]]
            self.runs[run.id] = run
            if trigger.key is not None:
                self.by_key[trigger.key] = run.id
            return run

    def approve(self, run_id: str, *, who: str) -> FakeRun:
        with self.lock:
            run = replace(self.runs[run_id], status="succeeded")
            self.runs[run_id] = run
            return run

    def status(self, run_id: str | None = None) -> list[FakeRun]:
        with self.lock:
            return [self.runs[run_id]] if run_id else list(self.runs.values())
