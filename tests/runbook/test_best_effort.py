"""Best-effort steps (a failure is recorded and warned about, never decides the run) and `when` (skip a step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.clock import FakeClock
from scaler.errors import ConfigError
from scaler.runbook.model import BEST_EFFORT_TIMEOUT, load
from scaler.runbook.records import BEST_EFFORT_FAILED, SKIPPED
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import PRIMARY, ClientFor, FailNTimes, make_service

WHO = Trigger(kind="manual", who="alice", why="drill")
DENIED = ("AccessDenied", 403)


def flag(sid: str, name: str, value: Any, **extra: Any) -> dict[str, Any]:
    """A step setting an SSM parameter, undone by putting the previous value back."""
    return {"id": sid, "action": "ssm.set_parameter", "inputs": {"name": name, "value": value},
            "compensate": {"action": "ssm.set_parameter",
                           "inputs": {"name": name, "value": f"{{{{ steps.{sid}.previous }}}}"}}, **extra}


def write(tmp: Path, steps: list[dict[str, Any]], **extra: Any) -> Path:
    folder = tmp / "runbooks"
    folder.mkdir(exist_ok=True)
    data = {"name": "rb", "parameters": {"go": {"type": "bool", "default": True}, "switch": {"required": False}},
            "steps": steps, **extra}
    path = folder / "rb.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def service(tmp: Path, clock: FakeClock) -> RunbookService:
    return make_service(tmp, clock=clock, runbooks=tmp / "runbooks")


def put(params: dict[str, Any]) -> dict[str, Any]:
    """The PutParameter arguments inside a before-call hook's (already serialized, JSON) request."""
    return json.loads(params.get("body") or b"{}")


def deny(svc: RunbookService, name: str, value: str | None = None) -> None:
    """Every PutParameter of `name` (with `value`, if given) fails with AccessDenied (permanent)."""

    def hook(params: dict[str, Any], **kw: Any) -> Any:
        args = put(params)
        hit = args.get("Name") == name and value in (None, args.get("Value"))
        return FailNTimes(1, *DENIED)(**kw) if hit else None

    svc.clients.events("ssm", PRIMARY).register("before-call.ssm.PutParameter", hook)


def value(client: ClientFor, name: str) -> str | None:
    try:
        return client("ssm", PRIMARY).get_parameter(Name=name)["Parameter"]["Value"]
    except client("ssm", PRIMARY).exceptions.ParameterNotFound:
        return None


def events(tmp: Path, name: str) -> list[dict[str, Any]]:
    lines = (tmp / "state" / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


# -- best effort --------------------------------------------------------------------------------------------

def test_a_failed_best_effort_step_is_recorded_warned_and_the_run_goes_on(
        tmp_path: Path, clock: FakeClock, mocked: ClientFor, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, [flag("a", "/a", "1"), flag("b", "/b", "2", best_effort=True),
                     flag("c", "/c", "{{ run.warnings }}")])
    svc = service(tmp_path, clock)
    deny(svc, "/b")
    run = svc.start("rb", {}, trigger=WHO)
    # b failed and nothing was undone: the run succeeded, and says what did not happen.
    assert (run.status, run.error) == ("succeeded", None)
    assert [(s.id, s.status) for s in run.steps] == [("a", "succeeded"), ("b", BEST_EFFORT_FAILED), ("c", "succeeded")]
    assert run.warnings == (f"b: {run.step('b').error}",) and "AccessDenied" in run.warnings[0]
    assert (value(mocked, "/a"), value(mocked, "/b"), value(mocked, "/c")) == ("1", None, run.warnings[0])
    assert [e["best_effort"] for e in events(tmp_path, "step.failed")] == [True]
    assert events(tmp_path, "run.finished")[0]["warnings"] == list(run.warnings)
    assert "succeeded; best-effort steps failed: b: " in caplog.text


def test_without_failures_run_warnings_read_none(tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    write(tmp_path, [flag("a", "/a", "1", best_effort=True), flag("note", "/note", "{{ run.warnings }}")])
    run = service(tmp_path, clock).start("rb", {}, trigger=WHO)
    assert (run.status, run.warnings, value(mocked, "/note")) == ("succeeded", (), "none")


def test_a_plain_failure_still_rolls_back_and_a_best_effort_undo_that_fails_does_not_make_it_incomplete(
        tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    mocked("ssm", PRIMARY).put_parameter(Name="/b", Value="before", Type="String")
    write(tmp_path, [flag("a", "/a", "1"), flag("b", "/b", "2", best_effort=True), flag("c", "/c", "3")])
    svc = service(tmp_path, clock)
    deny(svc, "/c")  # c fails: roll back b, then a
    deny(svc, "/b", "before")  # b's own put goes through; putting "before" back is denied
    run = svc.start("rb", {}, trigger=WHO)
    assert run.status == "rolled_back"
    assert run.error is not None and run.error.startswith("step c: ") and run.error.endswith(
        "; not undone (best effort): b")
    assert {s.id: s.compensation for s in run.steps if s.compensation} == {"a": "done", "b": BEST_EFFORT_FAILED}
    assert (value(mocked, "/a"), value(mocked, "/b")) == (None, "2")
    assert run.warnings == (f"b (undo): {run.step('b').compensation_error}",)


DEADLINES = [
    ("best effort, no timeout", {"best_effort": True}, BEST_EFFORT_TIMEOUT),
    ("best effort, own timeout", {"best_effort": True, "timeout": "2s"}, 2.0),
    ("plain step", {}, 300.0),
]


@pytest.mark.parametrize(("extra", "seconds"), [d[1:] for d in DEADLINES], ids=[d[0] for d in DEADLINES])
def test_best_effort_steps_get_a_short_deadline(tmp_path: Path, extra: dict[str, Any], seconds: float) -> None:
    rb = load(write(tmp_path, [flag("a", "/a", "1", **extra)]))
    assert rb.steps[0].timeout == seconds
    # The definition a run journals states it, so a resumed run keeps the same deadline.
    assert type(rb).model_validate(rb.model_dump(mode="json")).steps[0].timeout == seconds


def test_best_effort_contradicting_on_failure_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, [flag("a", "/a", "1", best_effort=True, on_failure="rollback")])
    with pytest.raises(ConfigError) as e:
        load(path)
    assert [p.where for p in e.value.problems] == ["steps[0]"]
    assert "best-effort step always continues" in str(e.value)


def test_best_effort_with_on_failure_continue_is_fine(tmp_path: Path) -> None:
    rb = load(write(tmp_path, [flag("a", "/a", "1", best_effort=True, on_failure="continue")]))
    assert rb.policy(rb.steps[0]) == "continue"


# -- when ---------------------------------------------------------------------------------------------------

WHEN = [
    ("bool param false", "{{ params.go }}", {"go": "false"}, False),
    ("bool param true", "{{ params.go }}", {}, True),
    ("unset param", "{{ params.switch }}", {}, False),
    ("set param", "{{ params.switch }}", {"switch": "hc-1"}, True),
    ("literal false", False, {}, False),
    ("text off", "off", {}, False),
]


@pytest.mark.parametrize(("when", "params", "runs"), [w[1:] for w in WHEN], ids=[w[0] for w in WHEN])
def test_when_decides_whether_a_step_runs(tmp_path: Path, clock: FakeClock, mocked: ClientFor, when: Any,
                                          params: dict[str, str], runs: bool) -> None:
    write(tmp_path, [flag("a", "/a", "1", when=when), flag("b", "/b", "2")])
    run = service(tmp_path, clock).start("rb", params, trigger=WHO)
    assert run.status == "succeeded", run.error
    assert (run.step("a").status, run.step("a").attempts, value(mocked, "/a")) == (
        ("succeeded", 1, "1") if runs else (SKIPPED, 0, None))
    assert value(mocked, "/b") == "2"


def test_when_on_outputs_a_step_never_produced_skips(tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    # "Put it back only if it was changed": a best-effort step that failed changed nothing.
    write(tmp_path, [flag("on", "/m", "on", best_effort=True),
                     flag("off", "/m", "off", when="{{ steps.on.changed }}", best_effort=True)])
    svc = service(tmp_path, clock)
    deny(svc, "/m")
    run = svc.start("rb", {}, trigger=WHO)
    assert [(s.id, s.status) for s in run.steps] == [("on", BEST_EFFORT_FAILED), ("off", SKIPPED)]
    assert [e["step"] for e in events(tmp_path, "step.skipped")] == ["off"]


def test_a_gate_whose_when_does_not_hold_waits_for_no_one(tmp_path: Path, clock: FakeClock,
                                                          mocked: ClientFor) -> None:
    write(tmp_path, [{"id": "gate", "action": "approve", "when": "{{ params.go }}"}, flag("a", "/a", "1")])
    svc = service(tmp_path, clock)
    waiting = svc.start("rb", {}, trigger=WHO)
    assert (waiting.status, waiting.waiting_on) == ("waiting", "gate")
    assert svc.approve(waiting.id, who="bob").status == "succeeded"
    skipped = svc.start("rb", {"go": "false"}, trigger=WHO)
    assert (skipped.status, skipped.step("gate").status, value(mocked, "/a")) == ("succeeded", SKIPPED, "1")


def test_when_references_are_checked_at_load(tmp_path: Path) -> None:
    path = write(tmp_path, [flag("a", "/a", "1", when="{{ params.nope }}"),
                            flag("b", "/b", "1", when="{{ steps.c.changed }}"), flag("c", "/c", "1")])
    with pytest.raises(ConfigError) as e:
        load(path)
    assert [p.where for p in e.value.problems] == ["steps[0].when", "steps[1].when"]
