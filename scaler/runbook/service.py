"""The public entry point to runbooks: list, plan, start, approve, resume and inspect runs."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scaler import template
from scaler.aws import AwsClients, AwsSettings
from scaler.clock import Clock, SystemClock
from scaler.errors import ConfigError, Problem
from scaler.runbook import params as P
from scaler.runbook.actions import REGISTRY
from scaler.runbook.audit import AuditLog
from scaler.runbook.context import Env
from scaler.runbook.engine import Engine
from scaler.runbook.errors import ApprovalError, NotARunbookName, NotARunId, ParamError, RunbookNotFound
from scaler.runbook.journal import Journal, RunLock
from scaler.runbook.model import NAME, NAME_MAX, Runbook, load, load_dir, runbook_files
from scaler.runbook.records import (
    START_GATE,
    ParamInfo,
    Plan,
    PlannedStep,
    ProviderCall,
    RunbookInfo,
    RunRecord,
    Trigger,
)
from scaler.runbook.redact import MASK, Redactor
from scaler.runbook.scope import scope as run_scope

__all__ = ["RunbookService", "Trigger", "AwsSettings", "RunRecord", "RunbookInfo", "Plan"]

# A run id as _new_id makes it ("region-failover-20250301T120000-a1b2c3"). It names the run's lock file, so,
# like a runbook name (which names a file in the runbooks directory), it can never be a path.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RUN_ID_MAX = 256


def check_runbook_name(name: str) -> str:
    """`name` if it is a runbook name; NotARunbookName otherwise ('../outside' must not reach a file outside)."""
    if len(name) <= NAME_MAX and NAME.fullmatch(name):
        return name
    raise NotARunbookName(
        f"{name!r} is not a runbook name (lower-case letters, digits, '.', '_' and '-', as its file's `name:` says)"
    )


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a run id; NotARunId otherwise ('../../x' must not place a lock file elsewhere)."""
    if len(run_id) <= RUN_ID_MAX and RUN_ID.fullmatch(run_id):
        return run_id
    raise NotARunId(
        f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-', as `scaler runbook status` lists them)"
    )


class RunbookService:
    """Runs runbooks from one directory, journaling to one SQLite file and auditing to one JSON-lines file.

    Safe to share between threads. `start`, `approve` and `resume` run synchronously until the run is
    done, failed (and rolled back), or waiting for an approval. A run whose concurrency scope is held by
    another unfinished run is refused with RunConflict (not queued): in an incident a queued failover that
    fires minutes later is worse than a clear refusal.
    """

    def __init__(
        self,
        *,
        runbooks_dir: Path,
        journal_path: Path,
        audit_path: Path,
        aws: AwsSettings | None = None,
        clock: Clock | None = None,
        http_timeout: float = 5.0,
        lazy: bool = False,
    ) -> None:
        """lazy=False opens (creating) the journal and the audit log now, so a path that cannot serve fails at
        start-up; lazy=True waits for the first call that needs them, so `plan` leaves nothing on disk."""
        self.runbooks_dir = Path(runbooks_dir)
        self.clock: Clock = clock or SystemClock()
        self.clients = AwsClients(aws)
        self.http_timeout = http_timeout
        journal_file = Path(journal_path).expanduser()
        self._journal_path, self._audit_path = journal_file, Path(audit_path)
        self._env: Env | None = None
        self._opening = threading.Lock()
        self.lock_dir = journal_file.parent / f"{journal_file.stem}.locks"
        # Secret parameters given by value live only here (never on disk), so approve/resume in this
        # process can finish a run; another process needs them as env:/file: references.
        self._secrets: dict[str, dict[str, str]] = {}
        self._guard = threading.Lock()
        if not lazy:
            self.env  # noqa: B018 (opens the journal and the audit log)

    @property
    def env(self) -> Env:
        """What runs share: the journal and the audit log, opened (and created) on first use."""
        with self._opening:
            if self._env is None:
                self._env = Env(
                    journal=Journal(self._journal_path),
                    audit=AuditLog(self._audit_path, clock=self.clock),
                    clients=self.clients,
                    clock=self.clock,
                    http_timeout=self.http_timeout,
                )
            return self._env

    @property
    def journal(self) -> Journal:
        return self.env.journal

    @property
    def audit(self) -> AuditLog:
        return self.env.audit

    # -- runbooks -----------------------------------------------------------------------------------

    def list(self) -> list[RunbookInfo]:
        return [self._info(path, rb) for _, (path, rb) in sorted(load_dir(self.runbooks_dir).items())]

    def runbook(self, name: str) -> tuple[Path, Runbook]:
        """Load one runbook by name. Only its own file has to be valid: a typo in another runbook must not
        block a failover."""
        check_runbook_name(name)
        for suffix in (".yaml", ".yml"):
            path = self.runbooks_dir / f"{name}{suffix}"
            if path.is_file():
                rb = load(path)
                if rb.name == name:
                    return path, rb
        if not self.runbooks_dir.is_dir():
            raise ConfigError(self.runbooks_dir, "runbooks directory not found")
        for path in runbook_files(self.runbooks_dir):
            try:
                rb = load(path)
            except ConfigError:
                continue
            if rb.name == name:
                return path, rb
        raise RunbookNotFound(f"no runbook named '{name}' in {self.runbooks_dir}")

    @staticmethod
    def _info(path: Path, rb: Runbook) -> RunbookInfo:
        return RunbookInfo(
            name=rb.name,
            description=rb.description,
            path=str(path),
            parameters=tuple(
                ParamInfo(
                    name=n,
                    type=p.type,
                    required=p.is_required,
                    secret=p.secret,
                    description=p.description,
                    default=p.default,
                )
                for n, p in rb.parameters.items()
            ),
            steps=tuple(s.id for s in rb.steps),
        )

    # -- plans --------------------------------------------------------------------------------------

    def plan(self, runbook: str, params: Mapping[str, Any]) -> Plan:
        """Resolve the parameters and list each step's provider calls, calling no provider."""
        _, rb = self.runbook(runbook)
        values = P.typed(rb, params)
        return self._plan(rb, values, Trigger(kind="manual", who="plan", why=""))

    def _plan(self, rb: Runbook, values: Mapping[str, Any], trigger: Trigger) -> Plan:
        shown = P.for_journal(rb, values)
        # Templates see the masked values, so no secret reaches a plan; references stay unresolved (a plan
        # must work where the secret's variable is not set) and literal values are masked once more.
        redactor = self._redactor(rb, {n: v for n, v in values.items() if not isinstance(v, P.Ref)})
        scope = {
            "params": shown,
            "steps": {},
            "run": {
                "id": "<run>",
                "runbook": rb.name,
                "trigger": {"kind": trigger.kind, "who": trigger.who, "why": trigger.why},
            },
        }

        def unresolved(expr: str) -> str:
            return f"{{{{ {expr} }}}}"

        def calls(action: str, raw: Mapping[str, Any]) -> tuple[ProviderCall, ...]:
            inputs = template.render(raw, scope, missing=unresolved)
            return tuple(
                ProviderCall(c.service, c.operation, redactor(dict(c.args)), c.mutates)
                for c in REGISTRY[action]().plan(inputs)
            )

        steps = tuple(
            PlannedStep(
                id=s.id,
                action=s.action,
                inputs=redactor(template.render(s.inputs, scope, missing=unresolved)),
                calls=calls(s.action, s.inputs),
                on_failure=rb.policy(s),
                compensate=calls(s.compensate.action, s.compensate.inputs) if s.compensate else (),
            )
            for s in rb.steps
        )
        checks = tuple(c for pre in rb.preconditions for c in calls(pre.action, pre.inputs))
        return Plan(runbook=rb.name, params=shown, scope=run_scope(rb, shown), checks=checks, steps=steps)

    # -- runs ---------------------------------------------------------------------------------------

    def start(
        self,
        runbook: str,
        params: Mapping[str, Any],
        *,
        trigger: Trigger,
        dry_run: bool = False,
        require_approval: bool = False,
    ) -> RunRecord:
        """Start a run and drive it until done, failed, or waiting; a repeated trigger key returns the
        first run as it is now. Raises RunConflict when the scope is busy, ParamError/ConfigError on bad
        input, RunbookNotFound.

        A secret parameter given as `env:NAME` or `file:/path` is read from there, unless the value is `Data`
        (text from an alert, as the trigger dispatch marks it): that is the secret's value itself."""
        path, rb = self.runbook(runbook)
        values = P.typed(rb, params)
        real = P.resolve_secrets(rb, values)
        redactor = self._redactor(rb, real)
        shown = P.for_journal(rb, values)
        run_id = self._new_id(rb.name)
        scope = redactor.text(run_scope(rb, real))
        definition = rb.model_dump(mode="json")
        steps = [(s.id, s.action) for s in rb.steps]
        if dry_run:
            return self._dry_run(rb, values=values, trigger=trigger, run_id=run_id, scope=scope, redactor=redactor)
        with RunLock(self.lock_dir, run_id) as lock:
            record = self.journal.create(
                run_id=run_id,
                runbook=rb.name,
                definition=definition,
                params=shown,
                trigger=trigger,
                scope=scope,
                status="waiting" if require_approval else "running",
                dry_run=False,
                steps=steps,
                now=self.clock.now(),
                waiting_on=START_GATE if require_approval else None,
            )
            if record.id != run_id:
                return record  # the idempotency key was seen before: that run is the answer
            self._hold(rb, run_id, values)
            self.audit.write(
                "run.started",
                redactor=redactor,
                run_id=run_id,
                runbook=rb.name,
                file=str(path),
                trigger={"kind": trigger.kind, "who": trigger.who, "why": trigger.why, "key": trigger.key},
                params=shown,
                scope=scope,
                require_approval=require_approval,
            )
            if require_approval:
                self.audit.write("run.waiting", redactor=redactor, run_id=run_id, gate=START_GATE)
                return record
            return self._release(self._engine(rb, run_id, real, redactor).drive(), lock)

    def approve(self, run_id: str, *, who: str) -> RunRecord:
        """Approve the gate the run waits at, then drive it on. ApprovalError if nothing waits or `who`
        is not among the step's approvers."""
        with RunLock(self.lock_dir, check_run_id(run_id)) as lock:
            run = self.journal.get(run_id)
            if run.status != "waiting" or not run.waiting_on:
                raise ApprovalError(f"run {run_id} is not waiting for an approval (status: {run.status})")
            rb = Runbook.model_validate(self.journal.definition(run_id))
            real = self._values(rb, run)
            redactor = self._redactor(rb, real)
            gate = run.waiting_on
            engine = self._engine(rb, run_id, real, redactor)
            if gate != START_GATE:
                allowed = template.render(rb.step(gate).inputs.get("approvers") or [], engine.scope(run))
                allowed = [allowed] if isinstance(allowed, str) else [str(a) for a in allowed or []]
                if allowed and who not in allowed:
                    # Refusals are audited too: who tried to push a DR run past its gate matters later.
                    self.audit.write("run.approval_refused", redactor=redactor, run_id=run_id, gate=gate, who=who)
                    raise ApprovalError(
                        f"{who} may not approve step {gate} of run {run_id} (approvers: {', '.join(allowed)})"
                    )
            self.journal.approve(run_id, gate, who, now=self.clock.now())
            self.journal.set_status(run_id, "running", now=self.clock.now())
            self.audit.write("run.approved", redactor=redactor, run_id=run_id, gate=gate, who=who)
            return self._release(engine.drive(), lock)

    def resume(self, run_id: str) -> RunRecord:
        """Continue an interrupted run from its first unfinished step (or unfinished rollback). A finished
        step is never repeated. A finished run, or one waiting for approval, is returned as it is."""
        with RunLock(self.lock_dir, check_run_id(run_id)) as lock:
            run = self.journal.get(run_id)
            if run.finished or run.status == "waiting":
                return run
            rb = Runbook.model_validate(self.journal.definition(run_id))
            real = self._values(rb, run)
            redactor = self._redactor(rb, real)
            self.audit.write("run.resumed", redactor=redactor, run_id=run_id, status=run.status)
            return self._release(self._engine(rb, run_id, real, redactor).drive(), lock)

    def status(self, run_id: str | None = None) -> list[RunRecord]:
        """One run, or the most recent runs (newest first)."""
        if run_id is not None:
            return [self.journal.get(check_run_id(run_id))]
        return self.journal.runs()

    # -- helpers ------------------------------------------------------------------------------------

    def _engine(self, rb: Runbook, run_id: str, real: Mapping[str, Any], redactor: Redactor) -> Engine:
        return Engine(env=self.env, runbook=rb, run_id=run_id, params=real, redactor=redactor)

    def _dry_run(
        self,
        rb: Runbook,
        *,
        values: Mapping[str, Any],
        trigger: Trigger,
        run_id: str,
        scope: str,
        redactor: Redactor,
    ) -> RunRecord:
        """Journal what the run would do (status "planned"), calling no provider."""
        plan = self._plan(rb, values, trigger)
        self.journal.create(
            run_id=run_id,
            runbook=rb.name,
            definition=rb.model_dump(mode="json"),
            params=plan.params,
            trigger=trigger,
            scope=scope,
            status="planned",
            dry_run=True,
            steps=[(s.id, s.action) for s in rb.steps],
            now=self.clock.now(),
        )
        for planned in plan.steps:
            would = [f"{c.service}.{c.operation}" for c in planned.calls]
            self.journal.outputs(
                run_id,
                planned.id,
                {"would_call": would, "inputs": dict(planned.inputs)},
                now=self.clock.now(),
            )
        self.audit.write(
            "run.planned",
            redactor=redactor,
            run_id=run_id,
            runbook=rb.name,
            trigger={"kind": trigger.kind, "who": trigger.who, "why": trigger.why},
            params=plan.params,
        )
        return self.journal.get(run_id)

    def _new_id(self, name: str) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock.now()))
        return f"{name}-{stamp}-{secrets.token_hex(3)}"

    @staticmethod
    def _redactor(rb: Runbook, real: Mapping[str, Any]) -> Redactor:
        return Redactor(str(real[n]) for n, p in rb.parameters.items() if p.secret and real.get(n))

    def _hold(self, rb: Runbook, run_id: str, values: Mapping[str, Any]) -> None:
        held = {
            n: str(values[n])
            for n, p in rb.parameters.items()
            if p.secret and values.get(n) is not None and not isinstance(values[n], P.Ref)
        }
        if held:
            with self._guard:
                self._secrets[run_id] = held

    def _release(self, run: RunRecord, lock: RunLock) -> RunRecord:
        """Forget a finished run's secret values and lock file (a long-running server must not collect them)."""
        if run.finished:
            with self._guard:
                self._secrets.pop(run.id, None)
            lock.discard()
        return run

    def _values(self, rb: Runbook, run: RunRecord) -> dict[str, Any]:
        """A stored run's parameter values with secrets put back (held in memory, or dereferenced)."""
        with self._guard:
            values = P.restored(rb, run.params, self._secrets.get(run.id, {}))
        missing = [n for n, p in rb.parameters.items() if p.secret and values.get(n) == MASK]
        if missing:
            raise ParamError(
                f"run {run.id}",
                [
                    Problem(
                        f"params.{n}",
                        "secret given by value to another process, so it was never stored; "
                        f"give it as {n}=env:VARIABLE or {n}=file:/path to resume elsewhere",
                    )
                    for n in missing
                ],
            )
        return P.resolve_secrets(rb, values)
