"""maintenance-mode (on and off), rotate-secret and security-lockdown against a moto server, under two faults:
every AWS call throttled twice before it goes through, and `python -m scaler runbook run` killed with SIGKILL
while the provider is still busy with a write of its slow step (the write applied, its answer held back), then
resumed. Each time the end state is read back from the providers, and every write is counted twice: in the audit
trail (succeeded calls, as `effects()` counts them) and at the provider itself (the moto backends run in this
process and see the writes of every process), so a write the killed run made and the resumed one made again
shows up even though the killed run never heard its answer."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.elbv2.models import ELBv2Backend
from moto.secretsmanager.models import SecretsManagerBackend
from moto.ssm.models import SimpleSystemManagerBackend

from scaler.clock import FakeClock
from scaler.runbook.actions.elb import TAG
from scaler.runbook.journal import Journal
from scaler.runbook.records import RunRecord
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import (
    PRIMARY,
    RUNBOOKS,
    ClientFor,
    Web,
    World,
    build_world,
    current_secret,
    flag_value,
    make_service,
)
from tests.runbook.test_runbook_e2e import ThrottleEachOperation, audit, effects
from tests.support.moto_server import MotoServer

ROOT = RUNBOOKS.parent
DRILL = Trigger(kind="manual", who="drill", why="fault drill")
HOOK_TOKEN = "SECRET-hook-token-123"
MESSAGE = "Back at 14:00 UTC"
APPLIED = "/app/db/password"  # where rotate-secret puts the new value (setSecret)


# -- the provider: writes as the moto backends applied them, and one answer held back ----------------------

WRITE_METHODS = {
    ELBv2Backend: ("create_rule", "delete_rule"),
    SimpleSystemManagerBackend: ("put_parameter", "delete_parameter"),
    SecretsManagerBackend: ("put_secret_value", "update_secret_version_stage"),
}


class Provider:
    """Counts the writes the moto server applied (named as the boto3 operations); can hold back the answer to
    the first write of one operation (whose arguments match) until `release` is set."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()
        self.held: tuple[str, Callable[[dict[str, Any]], bool]] | None = None
        self.reached = threading.Event()  # the held write is applied and its answer waits
        self.release = threading.Event()
        self.lock = threading.Lock()

    def hold(self, operation: str, when: Callable[[dict[str, Any]], bool]) -> None:
        self.held = (operation, when)

    def wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def wrapper(backend: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(backend, *args, **kwargs)  # raises for a write that was not applied
            with self.lock:
                self.writes[name] += 1
                hold = (self.held is not None and self.held[0] == name and not self.reached.is_set()
                        and self.held[1](signature.bind(backend, *args, **kwargs).arguments))
                if hold:
                    self.reached.set()
            if hold:
                self.release.wait(30)
            return result

        return wrapper


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    counted = Provider()
    for backend, names in WRITE_METHODS.items():
        for name in names:
            monkeypatch.setattr(backend, name, counted.wrap(name, getattr(backend, name)))
    yield counted
    counted.release.set()  # never leave a server thread waiting


# -- the worlds and what they look like before and after ------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """A world with secrets prod/db and prod/api; `old`: each one's AWSCURRENT (version, value) before the run."""

    world: World
    old: dict[str, tuple[str, str]]


def build_maintenance(client: ClientFor, *, on: bool) -> World:
    """A listener with /api/* at priority 1 and the flag 'off'; `on`: an earlier run's tagged maintenance rule at
    priority 2 and the flag 'on'."""
    world = build_world(client, frozenset({"alb", "flag"}))
    if on:
        client("elbv2", PRIMARY).create_rule(
            ListenerArn=world.listener_arn, Priority=2,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
            Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                "StatusCode": "503", "ContentType": "text/plain", "MessageBody": "Down"}}],
            Tags=[{"Key": TAG, "Value": "earlier-run"}])
        client("ssm", PRIMARY).put_parameter(Name=world.flag, Value="on", Type="String", Overwrite=True)
    return world


def build_secrets(client: ClientFor, parts: frozenset[str]) -> Secrets:
    world = build_world(client, parts | {"secrets"})
    return Secrets(world, {sid: current_secret(client, sid) for sid in world.secrets})


def maintenance_state(client: ClientFor, world: World) -> tuple[list[tuple[str, ...]], tuple[str, ...], str | None]:
    """(the fixed-response rules as (priority, status, body, our tag), every rule's priority, the flag)."""
    elb = client("elbv2", PRIMARY)
    rules = elb.describe_rules(ListenerArn=world.listener_arn)["Rules"]
    arns = [r["RuleArn"] for r in rules if not r["IsDefault"]]
    tags = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d.get("Tags", [])}
            for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    page = sorted((r["Priority"], a["FixedResponseConfig"]["StatusCode"], a["FixedResponseConfig"]["MessageBody"],
                   tags[r["RuleArn"]].get(TAG, "")) for r in rules for a in r["Actions"][:1]
                  if a["Type"] == "fixed-response")
    return page, tuple(sorted(r["Priority"] for r in rules)), flag_value(client, world)


def secret_state(client: ClientFor, sid: str, old_value: str) -> tuple[dict[str, list[str]], bool]:
    """(version -> stages, whether AWSCURRENT holds a new value)."""
    stages = client("secretsmanager", PRIMARY).describe_secret(SecretId=sid)["VersionIdsToStages"]
    return {v: sorted(s) for v, s in stages.items()}, current_secret(client, sid)[1] != old_value


def rotated(run: RunRecord) -> dict[str, str]:
    """secret -> the version the run made AWSCURRENT."""
    return {r["secret_id"]: r["version_id"] for r in (run.step("rotate").outputs or {})["rotated"]}


def rotate_state(client: ClientFor, w: Secrets, web: Web) -> dict[str, Any]:
    value = current_secret(client, "prod/db")[1]
    try:
        applied = client("ssm", PRIMARY).get_parameter(Name=APPLIED, WithDecryption=True)["Parameter"]["Value"]
    except client("ssm", PRIMARY).exceptions.ParameterNotFound:
        applied = None
    return {"prod/db": secret_state(client, "prod/db", w.old["prod/db"][1]),
            "prod/api": secret_state(client, "prod/api", w.old["prod/api"][1]),
            "length": len(value), "applied": applied == value, "tested with": web.bearer == [f"Bearer {value}"]}


def rotate_after(w: Secrets, run: RunRecord) -> dict[str, Any]:
    new = rotated(run)["prod/db"]
    return {"prod/db": ({w.old["prod/db"][0]: ["AWSPREVIOUS"], new: ["AWSCURRENT"]}, True),
            "prod/api": ({w.old["prod/api"][0]: ["AWSCURRENT"]}, False),  # not asked for, not touched
            "length": 48, "applied": True, "tested with": True}


def lockdown_state(client: ClientFor, w: Secrets, web: Web) -> dict[str, Any]:
    return {sid: secret_state(client, sid, value) for sid, (_, value) in w.old.items()} | {
        "maintenance": maintenance_state(client, w.world),
        "paged": [h["text"].startswith("[CRITICAL] Security lockdown") and "prod/api" in h["text"]
                  for h in web.hooks]}


def lockdown_after(w: Secrets, run: RunRecord) -> dict[str, Any]:
    new = rotated(run)
    return {sid: ({old: ["AWSPREVIOUS"], new[sid]: ["AWSCURRENT"]}, True) for sid, (old, _) in w.old.items()} | {
        # stays on until someone lifts it
        "maintenance": ([("2", "503", "Temporarily unavailable.", run.id)], ("1", "2", "default"), "on"),
        "paged": [True]}


# -- the scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One runbook on its world; `held` is the write of the `slow` step whose answer the provider holds back
    while the crash test kills the run (the first one whose arguments `held_when` accepts)."""

    runbook: str
    build: Callable[[ClientFor], Any]
    params: Callable[[Any, Web], dict[str, str]]
    state: Callable[[ClientFor, Any, Web], Any]
    before: Callable[[Any], Any]
    after: Callable[[Any, RunRecord], Any]
    writes: dict[str, int]
    slow: str
    held: str
    held_when: Callable[[dict[str, Any]], bool] = lambda _: True


def maintenance_params(state: str) -> Callable[[World, Web], dict[str, str]]:
    return lambda world, _: {"state": state, "listener_arn": world.listener_arn, "message": MESSAGE}


CASES = {
    "maintenance-mode-on": Case(
        "maintenance-mode", lambda client: build_maintenance(client, on=False), maintenance_params("on"),
        state=lambda client, world, _: maintenance_state(client, world),
        before=lambda _: ([], ("1", "default"), "off"),
        after=lambda _, run: ([("2", "503", MESSAGE, run.id)], ("1", "2", "default"), "on"),
        writes={"create_rule": 1, "put_parameter": 1}, slow="listener_rule", held="create_rule",
    ),
    "maintenance-mode-off": Case(
        "maintenance-mode", lambda client: build_maintenance(client, on=True), maintenance_params("off"),
        state=lambda client, world, _: maintenance_state(client, world),
        before=lambda _: ([("2", "503", "Down", "earlier-run")], ("1", "2", "default"), "on"),
        after=lambda _, __: ([], ("1", "default"), "off"),
        writes={"delete_rule": 1, "put_parameter": 1}, slow="listener_rule", held="delete_rule",
    ),
    "rotate-secret": Case(
        "rotate-secret", lambda client: build_secrets(client, frozenset()),
        lambda _, web: {"secret_id": "prod/db", "apply_to_parameter": APPLIED, "test_url": f"{web.url}/auth",
                        "length": "48"},
        state=rotate_state,
        before=lambda w: {"prod/db": ({w.old["prod/db"][0]: ["AWSCURRENT"]}, False),
                          "prod/api": ({w.old["prod/api"][0]: ["AWSCURRENT"]}, False),
                          "length": len(w.old["prod/db"][1]), "applied": False, "tested with": False},
        after=rotate_after,
        # AWSPENDING on the new value; setSecret; AWSCURRENT moved to it, AWSPENDING taken off it
        writes={"put_secret_value": 1, "put_parameter": 1, "update_secret_version_stage": 2},
        slow="rotate", held="put_secret_value",  # createSecret done, its answer not yet back
    ),
    "security-lockdown": Case(
        "security-lockdown", lambda client: build_secrets(client, frozenset({"alb", "flag"})),
        lambda w, web: {"secret_ids": ",".join(w.world.secrets), "listener_arn": w.world.listener_arn,
                        "webhook_url": f"{web.url}/hook?token={HOOK_TOKEN}"},
        state=lockdown_state,
        before=lambda w: {sid: ({version: ["AWSCURRENT"]}, False) for sid, (version, _) in w.old.items()} | {
            "maintenance": ([], ("1", "default"), "off"), "paged": []},
        after=lockdown_after,
        writes={"put_secret_value": 2, "update_secret_version_stage": 4, "create_rule": 1, "put_parameter": 1,
                "POST": 1},
        # the first secret is done; the second one's AWSCURRENT has moved, the answer is not back yet
        slow="rotate", held="update_secret_version_stage",
        held_when=lambda args: args["secret_id"] == "prod/api" and args["move_to_version_id"] is not None,
    ),
}


def at_provider(writes: dict[str, int]) -> Counter[str]:
    """The writes the moto backends see (webhook POSTs go to the web server)."""
    return Counter({op: n for op, n in writes.items() if op != "POST"})


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
def world(case: Case, server_client: ClientFor, provider: Provider) -> Any:
    built = case.build(server_client)
    provider.writes.clear()  # only the run's writes count
    return built


# -- throttling ------------------------------------------------------------------------------------------


def test_throttling_on_every_call_still_applies_each_effect_once(
        case: Case, world: Any, provider: Provider, server_service: RunbookService, server_client: ClientFor,
        web: Web) -> None:
    assert case.state(server_client, world, web) == case.before(world)
    throttle = ThrottleEachOperation(2)
    for service in ("elbv2", "ssm", "secretsmanager"):
        server_service.clients.events(service, PRIMARY).register("before-call", throttle)
    run = server_service.start(case.runbook, case.params(world, web), trigger=DRILL)
    assert run.status == "succeeded", run.error
    assert case.state(server_client, world, web) == case.after(world, run)
    assert effects(server_service) == case.writes
    assert provider.writes == at_provider(case.writes) and len(web.hooks) == case.writes.get("POST", 0)
    throttled = [e for e in audit(server_service.audit.path)
                 if e["event"] == "call" and e.get("error", {}).get("code") == "Throttling"]
    # every operation was throttled twice, then went through; the writes among them too
    assert len(throttled) == 2 * len(throttle.seen)
    assert {"".join(w.title() for w in op.split("_")) for op in at_provider(case.writes)} <= {
        event.rsplit(".", 1)[1] for event in throttle.seen}
    assert all(s.attempts == 1 for s in run.steps)  # retried per call, so no step had to start over


# -- a crash mid-step ------------------------------------------------------------------------------------


def test_killed_mid_step_then_resumed_repeats_no_write(
        case: Case, world: Any, provider: Provider, tmp_path: Path, moto: MotoServer, server_client: ClientFor,
        web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    assert case.state(server_client, world, web) == case.before(world)
    hook = f"{web.url}/hook?token={HOOK_TOKEN}"
    monkeypatch.setenv("DRILL_HOOK", hook)  # a reference, so another process can resume the run
    params = case.params(world, web)
    if "webhook_url" in params:
        params["webhook_url"] = "env:DRILL_HOOK"
    provider.hold(case.held, case.held_when)
    state = tmp_path / "state"
    state.mkdir()
    journal, audit_file = state / "journal.db", state / "audit.jsonl"
    command = [sys.executable, "-m", "scaler", "runbook", "run", case.runbook, "--runbooks", str(RUNBOOKS),
               "--journal", str(journal), "--audit", str(audit_file), "--endpoint-url", moto.url,
               "--who", "drill", "--why", "process killed mid-step"]
    for name, value in params.items():
        command += ["-p", f"{name}={value}"]
    child = subprocess.Popen(command, cwd=ROOT, env=os.environ | {"DRILL_HOOK": hook}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not provider.reached.wait(0.05):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, f"the child never got to {case.held} in {case.slow}"
        [running] = Journal(journal).runs()
        assert running.step(case.slow).status == "running"
        time.sleep(0.2)  # the child waits for the answer
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        provider.release.set()
    assert child.returncode == -signal.SIGKILL
    [killed] = Journal(journal).runs()
    assert killed.status == "running" and killed.step(case.slow).status == "running"
    done_before = [s.id for s in killed.steps if s.status == "succeeded"]
    assert provider.writes[case.held] >= 1  # the provider has the held write already

    svc = make_service(tmp_path, endpoint_url=moto.url, clock=FakeClock())
    run = svc.resume(killed.id)
    assert run.status == "succeeded", run.error
    assert all(run.step(sid).attempts == 1 for sid in done_before)
    assert run.step(case.slow).attempts == 2
    # Each write happened exactly once at the provider; the held one was not made again, so the audit trail
    # (which only has the answers that came back) has every write but that one.
    assert provider.writes == at_provider(case.writes) and len(web.hooks) == case.writes.get("POST", 0)
    assert effects(svc) == Counter(case.writes) - Counter({case.held: 1})
    assert case.state(server_client, world, web) == case.after(world, run)
