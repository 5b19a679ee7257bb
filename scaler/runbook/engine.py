"""Executing a run: ask progress.next_move, do that one thing, journal it, repeat until done or waiting."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from scaler import retry, template
from scaler.errors import PermanentError, ScalerError
from scaler.runbook.actions import REGISTRY
from scaler.runbook.actions.base import Action
from scaler.runbook.context import Env, StepContext
from scaler.runbook.errors import StepFailed
from scaler.runbook.model import Call, RetrySpec, Runbook, Step, Verify
from scaler.runbook.progress import next_move
from scaler.runbook.progress import scope as template_scope
from scaler.runbook.records import BEST_EFFORT_FAILED, SKIPPED, RunRecord
from scaler.runbook.redact import Redactor
from scaler.yamlio import problems_from

log = logging.getLogger("scaler.runbook")


def policy_of(spec: RetrySpec) -> retry.RetryPolicy:
    # Jitter of a tenth of the first delay spreads out runs that fail together without slowing any much.
    return retry.RetryPolicy(
        attempts=spec.attempts, initial=spec.backoff, max_delay=spec.max_delay, jitter=spec.backoff / 10
    )


def matches(outputs: Mapping[str, Any], expect: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether every expected output (a dotted path) has the expected value; also what was seen.

    Text and values compare loosely ('true' == True, '3' == 3), since templates render to text.
    """
    seen: dict[str, Any] = {}
    ok = True
    for path, want in expect.items():
        try:
            got = template.lookup(outputs, tuple(str(path).split(".")))
        except ScalerError:
            got = None
        seen[path] = got
        same = got == want or (not isinstance(got, dict | list) and str(got).lower() == str(want).lower())
        ok = ok and same
    return ok, seen


class Engine:
    """Drives one run of one runbook. Holds the run's real parameter values (secrets included) in memory."""

    def __init__(
        self, *, env: Env, runbook: Runbook, run_id: str, params: Mapping[str, Any], redactor: Redactor
    ) -> None:
        self.env = env
        self.runbook = runbook
        self.run_id = run_id
        self.params = dict(params)
        self.redactor = redactor
        self.call_policy = policy_of(runbook.call_retry)

    # -- the loop -----------------------------------------------------------------------------------

    def drive(self) -> RunRecord:
        journal, now = self.env.journal, self.env.clock.now
        while True:
            run = journal.get(self.run_id)
            move = next_move(self.runbook, run, checked=journal.checked(self.run_id))
            if move.kind == "finish":
                if run.status != move.status:
                    journal.set_status(self.run_id, str(move.status), now=now(), error=move.error)
                    self.event("run.finished", status=move.status, error=move.error, warnings=list(run.warnings))
                    text = f"run {self.run_id}: {move.status}" + (f" ({move.error})" if move.error else "")
                    if run.warnings:
                        text += "; best-effort steps failed: " + "; ".join(run.warnings)
                    log.log(logging.WARNING if run.warnings else logging.INFO, "%s", self.redactor.text(text))
                return journal.get(self.run_id)
            if move.kind == "await":
                journal.set_status(self.run_id, "waiting", now=now(), waiting_on=move.step)
                self.event("run.waiting", gate=move.step)
                return journal.get(self.run_id)
            if move.kind == "check":
                self.check(run)
            elif move.kind == "execute":
                self.execute(self.runbook.step(str(move.step)), run)
            elif move.kind == "skip":
                journal.step_ended(self.run_id, str(move.step), SKIPPED, now=now())
                self.event("step.skipped", step=move.step)
                log.info("run %s step %s skipped (its `when` does not hold)", self.run_id, move.step)
            elif move.kind == "rollback":
                journal.set_status(self.run_id, "rolling_back", now=now(), error=move.error)
                self.event("run.rolling_back", error=move.error)
            elif move.kind == "compensate":
                self.compensate(self.runbook.step(str(move.step)), run)

    # -- pieces -------------------------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        self.env.audit.write(name, redactor=self.redactor, run_id=self.run_id, **fields)

    def scope(self, run: RunRecord) -> dict[str, Any]:
        """What templates can see (progress.scope), with the run's real parameter values."""
        return template_scope(run, self.params)

    def context(self, step_id: str, phase: str, attempt: int, deadline: float, region: str | None) -> StepContext:
        return StepContext(
            env=self.env,
            run_id=self.run_id,
            step_id=step_id,
            phase=phase,
            attempt=attempt,
            deadline=deadline,
            region=region,
            redactor=self.redactor,
            call_policy=self.call_policy,
            persist_memo=phase != "check",
        )

    def describe(self, error: BaseException) -> str:
        text = str(error) or type(error).__name__
        return self.redactor.text(text if isinstance(error, ScalerError) else f"{type(error).__name__}: {text}")

    def inputs(self, action: Action, raw: Mapping[str, Any], scope: Mapping[str, Any], where: str) -> Any:
        try:
            return action.inputs.model_validate(template.render(raw, scope))
        except ValidationError as e:
            problems = "; ".join(str(p) for p in problems_from(e))
            raise StepFailed(f"{where}: inputs of {action.name} do not fit: {problems}") from None

    def run_action(
        self,
        spec: Step | Call,
        scope: Mapping[str, Any],
        *,
        step_id: str,
        phase: str,
        attempt: int,
        deadline: float,
        region: str | None = None,
    ) -> dict[str, Any]:
        """Render, validate and run one action, turning unexpected errors (bugs, odd responses) into
        permanent ones. `region` is the enclosing step's, used when `spec` names none."""
        action = REGISTRY[spec.action]()
        try:
            where = spec.region or region
            rendered = template.render(where, scope) if where else None
            ctx = self.context(step_id, phase, attempt, deadline, rendered)
            return action.run(self.inputs(action, spec.inputs, scope, step_id), ctx)
        except ScalerError:
            raise
        except Exception as e:
            raise PermanentError(f"{action.name}: {type(e).__name__}: {e}", code=type(e).__name__) from e

    def check(self, run: RunRecord) -> None:
        """Preconditions: every read-only check must match, or the run is refused before any step."""
        now = self.env.clock.now
        for i, pre in enumerate(self.runbook.preconditions):
            try:
                outputs = self.run_action(
                    pre,
                    self.scope(run),
                    step_id=f"precondition[{i}]",
                    phase="check",
                    attempt=1,
                    deadline=now() + 60.0,
                )
                ok, seen = matches(outputs, template.render(pre.expect, self.scope(run)))
                error = None if ok else f"expected {dict(pre.expect)}, found {seen}"
            except ScalerError as e:
                error = self.describe(e)
            if error is not None:
                what = f"precondition {i}" + (f" ({pre.description})" if pre.description else "")
                message = self.redactor.text(f"{what} not met: {error}")
                self.env.journal.set_status(self.run_id, "refused", now=now(), error=message)
                self.event("run.finished", status="refused", error=message)
                return
        self.env.journal.set_status(self.run_id, "running", now=now(), checked=True)

    def execute(self, step: Step, run: RunRecord) -> None:
        journal, clock = self.env.journal, self.env.clock
        action = REGISTRY[step.action]()
        if action.gate:
            approval = next(a for a in run.approvals if a.gate == step.id)
            journal.attempt_started(self.run_id, step.id, now=clock.now())
            journal.outputs(
                self.run_id,
                step.id,
                {"approved_by": approval.who, "approved_at": approval.at},
                now=clock.now(),
            )
            journal.step_ended(self.run_id, step.id, "succeeded", now=clock.now())
            return
        deadline = clock.now() + step.timeout

        def attempt() -> None:
            n = journal.attempt_started(self.run_id, step.id, now=clock.now())
            self.event("step.started", step=step.id, action=step.action, attempt=n)
            log.info("run %s step %s (%s) attempt %d", self.run_id, step.id, step.action, n)
            try:
                self.attempt(step, n, deadline)
            except Exception as e:
                journal.attempt_ended(self.run_id, step.id, n, now=clock.now(), error=self.describe(e))
                raise
            journal.attempt_ended(self.run_id, step.id, n, now=clock.now(), error=None)

        try:
            retry.call(attempt, policy=policy_of(step.retry), sleep=clock.sleep, deadline=deadline, now=clock.now)
        except Exception as e:
            error = self.describe(e)
            status = BEST_EFFORT_FAILED if step.best_effort else "failed"
            journal.step_ended(self.run_id, step.id, status, now=clock.now(), error=error)
            self.event("step.failed", step=step.id, error=error, best_effort=step.best_effort)
            going_on = " (best effort: the run goes on)" if step.best_effort else ""
            log.warning("%s", self.redactor.text(f"run {self.run_id} step {step.id} failed{going_on}: {error}"))
            return
        journal.step_ended(self.run_id, step.id, "succeeded", now=clock.now())
        self.event("step.succeeded", step=step.id)

    def attempt(self, step: Step, n: int, deadline: float) -> None:
        journal, clock = self.env.journal, self.env.clock
        run = journal.get(self.run_id)
        scope = self.scope(run)
        outputs = self.run_action(step, scope, step_id=step.id, phase="run", attempt=n, deadline=deadline)
        # Outputs are kept as soon as the action completed, so rollback can undo it even if verify fails.
        journal.outputs(self.run_id, step.id, self.redactor(outputs), now=clock.now())
        if step.verify is not None:
            self.verify(step, step.verify, n, deadline)

    def verify(self, step: Step, check: Verify, n: int, deadline: float) -> None:
        clock = self.env.clock
        until = min(deadline, clock.now() + check.timeout)
        interval = check.interval
        while True:
            scope = self.scope(self.env.journal.get(self.run_id))
            outputs = self.run_action(
                check, scope, step_id=step.id, phase="verify", attempt=n, deadline=until, region=step.region
            )
            ok, seen = matches(outputs, template.render(check.expect, scope))
            if ok:
                return
            if clock.now() + interval > until:
                raise StepFailed(
                    self.redactor.text(f"verify {check.action}: expected {dict(check.expect)}, found {seen}")
                )
            clock.sleep(interval)

    def compensate(self, step: Step, run: RunRecord) -> None:
        journal, clock = self.env.journal, self.env.clock
        assert step.compensate is not None
        comp = step.compensate
        journal.compensation(self.run_id, step.id, "running", now=clock.now())
        self.event("compensation.started", step=step.id, action=comp.action)
        deadline = clock.now() + step.timeout
        tries = 0

        def once() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            return self.run_action(
                comp,
                self.scope(run),
                step_id=step.id,
                phase="compensate",
                attempt=tries,
                deadline=deadline,
                region=step.region,
            )

        try:
            retry.call(once, policy=policy_of(step.retry), sleep=clock.sleep, deadline=deadline, now=clock.now)
        except Exception as e:
            error = self.describe(e)
            status = BEST_EFFORT_FAILED if step.best_effort else "failed"
            journal.compensation(self.run_id, step.id, status, now=clock.now(), error=error)
            self.event("compensation.failed", step=step.id, error=error, best_effort=step.best_effort)
            going_on = " (best effort)" if step.best_effort else ""
            log.warning(
                "%s", self.redactor.text(f"run {self.run_id} step {step.id} compensation failed{going_on}: {error}")
            )
            return
        journal.compensation(self.run_id, step.id, "done", now=clock.now())
        self.event("compensation.done", step=step.id)
