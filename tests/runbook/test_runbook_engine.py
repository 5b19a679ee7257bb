"""The service and engine: gates, idempotent starts, scopes, dry runs, failure policies, rollback, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.clock import FakeClock
from scaler.errors import ConfigError
from scaler.runbook.errors import ApprovalError, ParamError, RunbookNotFound, RunBusy, RunConflict, RunNotFound
from scaler.runbook.journal import RunLock
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import PRIMARY, ClientFor, FailNTimes, Web, make_service

WHO = Trigger(kind="manual", who="alice", why="drill")


def flag_step(sid: str, name: str, value: str, **extra: Any) -> dict[str, Any]:
    """A step setting an SSM parameter, with the usual compensation back to the previous value."""
    return {"id": sid, "action": "ssm.set_parameter", "inputs": {"name": name, "value": value},
            "compensate": {"action": "ssm.set_parameter",
                           "inputs": {"name": name, "value": f"{{{{ steps.{sid}.previous }}}}"}}, **extra}


def runbook(tmp: Path, name: str, steps: list[dict[str, Any]], **extra: Any) -> Path:
    folder = tmp / "runbooks"
    folder.mkdir(exist_ok=True)
    data = {"name": name, "parameters": {"env": {"default": "prod"}}, "steps": steps, **extra}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def svc_for(tmp: Path, clock: FakeClock) -> RunbookService:
    return make_service(tmp, clock=clock, runbooks=tmp / "runbooks")


def param(client: ClientFor, name: str) -> str | None:
    try:
        return client("ssm", PRIMARY).get_parameter(Name=name)["Parameter"]["Value"]
    except client("ssm", PRIMARY).exceptions.ParameterNotFound:
        return None


def audit(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp / "state" / "audit.jsonl").read_text().splitlines()]


def puts(tmp: Path, name: str) -> int:
    """Successful put_parameter calls for one parameter, from the audit trail."""
    return sum(1 for e in audit(tmp) if e["event"] == "call" and e["operation"] == "put_parameter"
               and e["args"]["Name"] == name and "result" in e)


@pytest.fixture
def two_flags(tmp_path: Path) -> Path:
    return runbook(tmp_path, "flags", [flag_step("a", "/a", "1"), flag_step("b", "/b", "2")])


# -- approvals --------------------------------------------------------------------------------------

def test_approve_step_waits_and_only_listed_approver_continues(tmp_path: Path, clock: FakeClock,
                                                               mocked: ClientFor) -> None:
    runbook(tmp_path, "gated", [
        flag_step("before", "/before", "x"),
        {"id": "gate", "action": "approve", "inputs": {"message": "go?", "approvers": ["carol"]}},
        flag_step("after", "/after", "y"),
    ])
    svc = svc_for(tmp_path, clock)
    run = svc.start("gated", {}, trigger=WHO)
    assert (run.status, run.waiting_on, param(mocked, "/before"), param(mocked, "/after")) == ("waiting", "gate",
                                                                                               "x", None)
    with pytest.raises(ApprovalError, match="bob may not approve"):
        svc.approve(run.id, who="bob")
    assert [(e["event"], e["who"]) for e in audit(tmp_path) if e["event"].startswith("run.appro")] == [
        ("run.approval_refused", "bob")]
    done = svc.approve(run.id, who="carol")
    assert (done.status, param(mocked, "/after")) == ("succeeded", "y")
    assert done.step("gate").outputs == {"approved_by": "carol", "approved_at": clock.now()}
    assert [(a.gate, a.who) for a in done.approvals] == [("gate", "carol")]
    with pytest.raises(ApprovalError, match="not waiting"):
        svc.approve(run.id, who="carol")


def test_require_approval_holds_before_the_first_step(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                      two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    run = svc.start("flags", {}, trigger=WHO, require_approval=True)
    assert (run.status, run.waiting_on, param(mocked, "/a")) == ("waiting", "start", None)
    assert not [e for e in audit(tmp_path) if e["event"] == "call"]  # not even a read before approval
    done = svc.approve(run.id, who="oncall")
    assert (done.status, param(mocked, "/a"), param(mocked, "/b")) == ("succeeded", "1", "2")


# -- starting ---------------------------------------------------------------------------------------

def test_same_idempotency_key_returns_the_first_run(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                    two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    key = Trigger(kind="alertmanager", who="am", why="RegionDown", key="fp-1@2024-01-01T00:00:00Z")
    first = svc.start("flags", {}, trigger=key)
    second = svc.start("flags", {}, trigger=key)
    assert second.id == first.id and second.status == "succeeded"
    assert len(svc.status()) == 1 and puts(tmp_path, "/a") == 1


def test_busy_scope_refuses_a_second_run(tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    runbook(tmp_path, "scoped", [flag_step("a", "/{{ params.env }}/a", "1")], concurrency="env:{{ params.env }}")
    svc = svc_for(tmp_path, clock)
    held = svc.start("scoped", {}, trigger=WHO, require_approval=True)
    with pytest.raises(RunConflict) as caught:
        svc.start("scoped", {}, trigger=WHO)
    assert (caught.value.scope, caught.value.holder) == ("env:prod", held.id)
    assert svc.start("scoped", {"env": "staging"}, trigger=WHO).status == "succeeded"  # another scope
    svc.approve(held.id, who="alice")
    assert svc.start("scoped", {}, trigger=WHO).status == "succeeded"  # free again once the first finished


SPELLINGS = [
    ("prefix and case", ("/hostedzone/Z1", "app.example.com"), ("Z1", "APP.example.com.")),
    ("trailing dot", ("Z1", "app.example.com."), ("/hostedzone/Z1", "app.example.com")),
    ("spaces and case", ("Z1", " App.Example.COM"), ("Z1", "app.example.com.")),
]


@pytest.mark.parametrize(("first", "second"), [s[1:] for s in SPELLINGS], ids=[s[0] for s in SPELLINGS])
def test_one_record_spelt_two_ways_is_one_scope(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                first: tuple[str, str], second: tuple[str, str]) -> None:
    # The scope is built from each parameter as its action reads it: a zone id without its /hostedzone/
    # prefix, a record name in lower case with the trailing dot; an ARN (maintenance-mode) as given.
    runbook(tmp_path, "dns", [
        {"id": "upsert", "action": "route53.upsert_record",
         "inputs": {"zone_id": "{{ params.zone_id }}", "name": "{{ params.record }}", "values": ["10.0.0.1"]}},
    ], parameters={"zone_id": {}, "record": {}}, concurrency="dns:{{ params.zone_id }}/{{ params.record }}")
    svc = svc_for(tmp_path, clock)
    held = svc.start("dns", {"zone_id": first[0], "record": first[1]}, trigger=WHO, require_approval=True)
    assert held.scope == "dns:Z1/app.example.com."
    with pytest.raises(RunConflict) as caught:
        svc.start("dns", {"zone_id": second[0], "record": second[1]}, trigger=WHO)
    assert (caught.value.scope, caught.value.holder) == ("dns:Z1/app.example.com.", held.id)
    assert svc.plan("dns", {"zone_id": second[0], "record": second[1]}).scope == "dns:Z1/app.example.com."
    # another record in the same zone is another scope
    other = svc.start("dns", {"zone_id": "Z1", "record": "api.example.com"}, trigger=WHO, require_approval=True)
    assert other.scope == "dns:Z1/api.example.com."


def test_arns_and_other_values_stay_as_given_in_the_scope(tmp_path: Path, clock: FakeClock) -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/Web/1/2"
    runbook(tmp_path, "mm", [
        {"id": "rule", "action": "elb.maintenance_rule", "inputs": {"listener_arn": "{{ params.listener }}",
                                                                     "enabled": True}},
    ], parameters={"listener": {}, "env": {"default": "Prod.Example"}},
        concurrency="maintenance:{{ params.listener }}:{{ params.env }}")
    run = svc_for(tmp_path, clock).start("mm", {"listener": arn}, trigger=WHO, require_approval=True)
    assert run.scope == f"maintenance:{arn}:Prod.Example"


def test_a_name_or_run_id_that_is_a_path_reaches_no_file(tmp_path: Path, clock: FakeClock, two_flags: Path) -> None:
    (tmp_path / "outside.yaml").write_text("name: outside\nsteps: [not: {valid")  # must never be parsed
    svc = svc_for(tmp_path, clock)
    for name in ("../outside", str(tmp_path / "outside"), "..", ".flags", "Flags", "flags\n"):
        with pytest.raises(RunbookNotFound, match="is not a runbook name"):
            svc.start(name, {}, trigger=WHO)
    for run_id in ("../../x", "", ".", "a/b", "x\n"):
        for act in (svc.resume, lambda r: svc.approve(r, who="alice"), svc.status):
            with pytest.raises(RunNotFound, match="is not a run id"):
                act(run_id)
    assert not list(tmp_path.rglob("*.lock"))


def test_dry_run_calls_nothing_and_journals_the_plan(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                     two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    run = svc.start("flags", {}, trigger=WHO, dry_run=True)
    assert run.status == "planned" and run.dry_run
    assert run.step("a").outputs == {"would_call": ["ssm.get_parameter", "ssm.put_parameter"],
                                     "inputs": {"name": "/a", "value": "1"}}
    assert param(mocked, "/a") is None
    assert [e["event"] for e in audit(tmp_path)] == ["run.planned"]


def test_unknown_runbook_and_a_broken_neighbour(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                two_flags: Path) -> None:
    (two_flags / "broken.yaml").write_text("name: broken\nsteps: nope\n")
    svc = svc_for(tmp_path, clock)
    assert svc.start("flags", {}, trigger=WHO).status == "succeeded"  # a typo elsewhere must not block it
    with pytest.raises(RunbookNotFound):
        svc.start("nope", {}, trigger=WHO)
    with pytest.raises(ConfigError, match="broken.yaml"):
        svc.list()


def test_precondition_not_met_refuses_before_any_step(tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    mocked("ssm", PRIMARY).put_parameter(Name="/armed", Value="no", Type="String")
    runbook(tmp_path, "guarded", [flag_step("a", "/a", "1")], preconditions=[
        {"description": "system armed", "action": "ssm.get_parameter", "inputs": {"name": "/armed"},
         "expect": {"value": "yes"}}])
    run = svc_for(tmp_path, clock).start("guarded", {}, trigger=WHO)
    assert run.status == "refused" and "system armed" in str(run.error) and "'value': 'no'" in str(run.error)
    assert run.step("a").status == "pending" and param(mocked, "/a") is None


# -- failures ---------------------------------------------------------------------------------------

def notify_step(web: Web, **extra: Any) -> dict[str, Any]:
    return {"id": "tell", "action": "notify.webhook", "inputs": {"url": f"{web.url}/hook", "text": "hi"}, **extra}


@pytest.mark.parametrize(("policy", "status", "a_after", "rolled_back"), [
    ("continue", "succeeded", "1", None),
    ("abort", "failed", "1", None),
    ("rollback", "rolled_back", None, "done"),
], ids=["continue", "abort", "rollback"])
def test_on_failure_policies(tmp_path: Path, clock: FakeClock, mocked: ClientFor, web: Web, policy: str,
                             status: str, a_after: str | None, rolled_back: str | None) -> None:
    web.hook_status = [404]
    runbook(tmp_path, "pol", [flag_step("a", "/a", "1"), notify_step(web, on_failure=policy)])
    run = svc_for(tmp_path, clock).start("pol", {}, trigger=WHO)
    assert (run.status, param(mocked, "/a"), run.step("a").compensation) == (status, a_after, rolled_back)
    assert run.step("tell").status == "failed" and "status 404" in str(run.step("tell").error)


def test_rollback_runs_compensations_newest_first(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                  web: Web) -> None:
    mocked("ssm", PRIMARY).put_parameter(Name="/b", Value="old-b", Type="String")
    web.hook_status = [400]
    runbook(tmp_path, "undo", [flag_step("a", "/a", "1"), flag_step("b", "/b", "2"), notify_step(web)])
    run = svc_for(tmp_path, clock).start("undo", {}, trigger=WHO)
    assert run.status == "rolled_back" and run.error and run.error.startswith("step tell:")
    assert (param(mocked, "/a"), param(mocked, "/b")) == (None, "old-b")  # /a did not exist before: deleted
    order = [e["step"] for e in audit(tmp_path) if e["event"] == "compensation.done"]
    assert order == ["b", "a"]


def test_failed_compensation_leaves_run_failed_naming_it(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                         web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    web.hook_status = [400]
    runbook(tmp_path, "undo", [flag_step("a", "/a", "1"), flag_step("b", "/b", "2"), notify_step(web)])
    svc = svc_for(tmp_path, clock)
    # Deleting /b (its undo) is denied; /a's undo must still run.
    svc.clients.events("ssm").register("before-call.ssm.DeleteParameter",
                                                   FailNTimes(1, "AccessDeniedException", 403))
    run = svc.start("undo", {}, trigger=WHO)
    assert run.status == "failed" and "compensation failed for: b" in str(run.error)
    assert (run.step("b").compensation, run.step("a").compensation) == ("failed", "done")
    assert (param(mocked, "/a"), param(mocked, "/b")) == (None, "2")


def test_verify_failure_rolls_back_the_step_itself(tmp_path: Path, clock: FakeClock, mocked: ClientFor) -> None:
    step = flag_step("a", "/a", "1", verify={"action": "ssm.get_parameter", "inputs": {"name": "/a"},
                                             "expect": {"value": "2"}, "interval": "5s", "timeout": "20s"})
    runbook(tmp_path, "checked", [step])
    run = svc_for(tmp_path, clock).start("checked", {}, trigger=WHO)
    assert run.status == "rolled_back" and "expected {'value': '2'}, found {'value': '1'}" in str(run.error)
    assert run.step("a").compensation == "done" and param(mocked, "/a") is None


def test_step_retry_reruns_the_whole_step(tmp_path: Path, clock: FakeClock, web: Web) -> None:
    # 5 provider-level tries fail (500) -> first step attempt fails; the second attempt gets through.
    web.hook_status = [500] * 6
    runbook(tmp_path, "retry", [notify_step(web, retry={"attempts": 2, "backoff": "10s"})])
    run = svc_for(tmp_path, clock).start("retry", {}, trigger=WHO)
    assert (run.status, run.step("tell").attempts, len(web.hooks)) == ("succeeded", 2, 1)


def test_inputs_that_do_not_fit_fail_the_step_clearly(tmp_path: Path, clock: FakeClock) -> None:
    runbook(tmp_path, "typed", [{"id": "w", "action": "wait", "inputs": {"seconds": "{{ params.env }}"}}])
    run = svc_for(tmp_path, clock).start("typed", {}, trigger=WHO)
    assert run.status == "rolled_back" and "inputs of wait do not fit: seconds: cannot read 'prod'" in str(run.error)


def test_step_timeout_fails_a_long_wait(tmp_path: Path, clock: FakeClock) -> None:
    runbook(tmp_path, "slow", [{"id": "w", "action": "wait", "inputs": {"seconds": "{{ params.env }}"},
                                "timeout": "1m"}], parameters={"env": {"default": "90s"}})
    run = svc_for(tmp_path, clock).start("slow", {}, trigger=WHO)
    assert run.status == "rolled_back" and "timeout reached" in str(run.error)


# -- resume -----------------------------------------------------------------------------------------

class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the engine catches it."""


def crash_on(n: int) -> Any:
    calls = {"n": 0}

    def hook(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash()

    return hook


def test_resume_continues_at_the_unfinished_step(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                 two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    svc.clients.events("ssm").register("before-call.ssm.PutParameter", crash_on(2))
    with pytest.raises(Crash):
        svc.start("flags", {}, trigger=WHO)
    [run] = svc.status()
    assert (run.status, run.step("a").status, run.step("b").status) == ("running", "succeeded", "running")
    fresh = svc_for(tmp_path, clock)  # as after a restart
    done = fresh.resume(run.id)
    assert done.status == "succeeded" and (param(mocked, "/a"), param(mocked, "/b")) == ("1", "2")
    assert (done.step("a").attempts, done.step("b").attempts) == (1, 2)
    assert puts(tmp_path, "/a") == 1 and puts(tmp_path, "/b") == 1
    assert fresh.resume(run.id).status == "succeeded"  # resuming a finished run changes nothing
    assert puts(tmp_path, "/b") == 1


def test_resume_needs_literal_secrets_again_but_not_references(tmp_path: Path, clock: FakeClock, web: Web,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runbook(tmp_path, "hook", [{"id": "gate", "action": "approve"},
                               {"id": "tell", "action": "notify.webhook",
                                "inputs": {"url": "{{ params.url }}", "text": "x"}}],
            parameters={"url": {"secret": True}})
    svc = svc_for(tmp_path, clock)
    literal = svc.start("hook", {"url": f"{web.url}/hook?k=literal-secret-1"}, trigger=WHO)
    assert literal.params["url"] == "***"
    with pytest.raises(ParamError, match="params.url"):
        svc_for(tmp_path, clock).approve(literal.id, who="alice")  # another process: the value is gone
    assert svc.approve(literal.id, who="alice").status == "succeeded"  # the same process still holds it
    monkeypatch.setenv("HOOK_URL", f"{web.url}/hook?k=env-secret-2")
    ref = svc.start("hook", {"url": "env:HOOK_URL"}, trigger=WHO)
    assert ref.params["url"] == "env:HOOK_URL"
    assert svc_for(tmp_path, clock).approve(ref.id, who="alice").status == "succeeded"
    assert len(web.hooks) == 2


def test_a_run_being_executed_cannot_be_resumed_twice(tmp_path: Path, clock: FakeClock, mocked: ClientFor,
                                                      two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    run = svc.start("flags", {}, trigger=WHO, require_approval=True)
    with RunLock(svc.lock_dir, run.id), pytest.raises(RunBusy):
        svc.approve(run.id, who="alice")
    assert svc.approve(run.id, who="alice").status == "succeeded"
    assert not list(svc.lock_dir.glob("*.lock"))  # a finished run leaves no lock file behind


def test_status_lists_newest_first(tmp_path: Path, clock: FakeClock, mocked: ClientFor, two_flags: Path) -> None:
    svc = svc_for(tmp_path, clock)
    first = svc.start("flags", {}, trigger=WHO)
    clock.advance(60)
    second = svc.start("flags", {}, trigger=WHO)
    assert [r.id for r in svc.status()] == [second.id, first.id]
    assert svc.status(first.id)[0].trigger == WHO
