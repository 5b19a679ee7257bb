"""progress.next_move: the whole run-state machine as a table of journal states and the move they lead to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scaler.runbook.model import Runbook
from scaler.runbook.progress import Move, next_move
from scaler.runbook.records import Approval, RunRecord, StepRecord, Trigger

RUNBOOK = Runbook.model_validate({
    "name": "m",
    "steps": [
        {"id": "a", "action": "wait", "inputs": {"seconds": 1},
         "compensate": {"action": "wait", "inputs": {"seconds": 1}}},
        {"id": "b", "action": "wait", "inputs": {"seconds": 1}, "on_failure": "continue"},
        {"id": "gate", "action": "approve"},
        {"id": "c", "action": "wait", "inputs": {"seconds": 1}, "on_failure": "abort",
         "compensate": {"action": "wait", "inputs": {"seconds": 1}}},
        {"id": "d", "action": "wait", "inputs": {"seconds": 1},
         "compensate": {"action": "wait", "inputs": {"seconds": 1}}},
    ],
})
DONE = {"waited": 1}


def run(status: str = "running", waiting_on: str | None = None, approvals: tuple[str, ...] = (),
        **steps: tuple[str, dict | None, str | None]) -> RunRecord:
    """A run record; each step given as (status, outputs, compensation), the rest pending."""
    records = tuple(StepRecord(id=s.id, action=s.action, status=steps.get(s.id, ("pending", None, None))[0],
                               outputs=steps.get(s.id, ("", None, None))[1],
                               compensation=steps.get(s.id, ("", None, None))[2]) for s in RUNBOOK.steps)
    return RunRecord(id="r", runbook="m", status=status, params={}, trigger=Trigger("manual", "t", "t"),
                     scope="m", dry_run=False, created_at=0, updated_at=0, waiting_on=waiting_on,
                     error="boom" if status == "rolling_back" else None, steps=records,
                     approvals=tuple(Approval(gate=g, who="x", at=0) for g in approvals))


OK = ("succeeded", DONE, None)
FAILED = ("failed", None, None)

TABLE = [
    ("fresh run checks preconditions first", run(), False, Move("check")),
    ("then the first step", run(), True, Move("execute", step="a")),
    ("a crashed step runs again", run(a=("running", None, None)), True, Move("execute", step="a")),
    ("finished steps are skipped", run(a=OK), True, Move("execute", step="b")),
    ("continue-on-failure moves on to the gate", run(a=OK, b=FAILED), True, Move("await", step="gate")),
    ("approved gate is executed (recorded)", run(approvals=("gate",), a=OK, b=OK), True,
     Move("execute", step="gate")),
    ("start gate holds everything", run("waiting", "start"), False, Move("await", step="start")),
    ("approved start gate goes on", run("waiting", "start", ("start",)), False, Move("check")),
    ("abort stops without undo", run(a=OK, b=OK, gate=OK, c=FAILED), True,
     Move("finish", status="failed", error="step c: None")),
    ("rollback is started", run(a=OK, b=OK, gate=OK, c=OK, d=FAILED), True,
     Move("rollback", step="d", error="step d: None")),
    ("all done", run(a=OK, b=OK, gate=OK, c=OK, d=OK), True, Move("finish", status="succeeded")),
    ("rollback: newest completed step first", run("rolling_back", a=OK, c=OK, d=FAILED), True,
     Move("compensate", step="c")),
    ("rollback: a failed step with outputs is undone", run("rolling_back", a=OK, c=OK, d=("failed", DONE, None)),
     True, Move("compensate", step="d")),
    ("rollback: an interrupted compensation runs again", run("rolling_back", a=OK, c=("succeeded", DONE, "running")),
     True, Move("compensate", step="c")),
    ("rollback: finished", run("rolling_back", a=("succeeded", DONE, "done")), True,
     Move("finish", status="rolled_back", error="boom")),
    ("rollback: a failed compensation is named", run("rolling_back", a=("succeeded", DONE, "failed")), True,
     Move("finish", status="failed", error="boom; rollback incomplete, compensation failed for: a")),
    ("terminal stays terminal", replace(run(a=OK), status="succeeded"), True, Move("finish", status="succeeded")),
]


@pytest.mark.parametrize(("record", "checked", "move"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_next_move(record: RunRecord, checked: bool, move: Move) -> None:
    assert next_move(RUNBOOK, record, checked=checked) == move
