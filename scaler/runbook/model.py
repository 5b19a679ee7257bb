"""The runbook file format (YAML, pydantic v2) and loading it with every problem reported at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from scaler.errors import ConfigError, Problem
from scaler.runbook.checks import check
from scaler.secrets import is_reference
from scaler.units import PositiveSeconds, Seconds
from scaler.yamlio import Strict, read_yaml, validate

# A runbook's name is also its file's name (<name>.yaml): no '/', and never '.' or '..'.
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NAME_MAX = 128
Ident = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=64)]
RunbookName = Annotated[str, Field(pattern=NAME.pattern, max_length=NAME_MAX)]
OnFailure = Literal["abort", "continue", "rollback"]


class RetrySpec(Strict):
    """Tries of a whole step when it fails with a transient error (actions are idempotent, so re-running
    one is safe). attempts 3, backoff 1s, max_delay 30s -> waits of about 1 s, then 2 s."""

    attempts: int = Field(1, ge=1, le=20, description="Tries including the first (1 = no retry)")
    backoff: Seconds = Field(1.0, description="Seconds before the second try; doubles after each try")
    max_delay: Seconds = Field(30.0, description="Upper bound on any one delay, seconds")


class CallRetrySpec(RetrySpec):
    """Retries of one provider call on throttling/5xx/connection errors, before the step sees the error."""

    attempts: int = Field(5, ge=1, le=20, description="Tries of one provider call including the first")
    backoff: Seconds = Field(0.2, description="Seconds before the second try; doubles after each try")
    max_delay: Seconds = Field(5.0, description="Upper bound on any one delay, seconds")


class Param(Strict):
    """One run parameter. Values arrive as text (CLI, webhook) and are converted to `type`."""

    type: Literal["string", "int", "float", "bool", "list"] = "string"
    description: str = ""
    required: bool | None = Field(None, description="Default: required when there is no default")
    default: Any = None
    secret: bool = Field(False, description="Masked everywhere it would be written; string only")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.secret and self.type != "string":
            raise ValueError("secret parameters must be of type string")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        if self.secret and self.default is not None and not is_reference(self.default):
            # The file would then hold the secret itself; point at where it lives instead.
            raise ValueError("a secret default must be a reference: 'env:VARIABLE' or 'file:/path'")
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class Call(Strict):
    """An action with inputs: what a step runs on rollback."""

    action: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    region: str | None = Field(None, description="AWS region for this action's calls (default: the step's)")


class Check(Call):
    """A read-only action whose outputs must match `expect` (output name -> value)."""

    description: str = ""
    expect: dict[str, Any] = Field(min_length=1)


class Verify(Check):
    """Poll a read-only check after the action until it matches, or fail the step."""

    interval: PositiveSeconds = Field(2.0, description="Seconds between polls")
    timeout: PositiveSeconds = Field(60.0, description="Give up after this many seconds")


# A best-effort step talks to something the run can do without (a failed region's ALB, a chat webhook): it
# gets this long unless it says otherwise. 10 s covers the default call_retry against an endpoint that answers
# 503 at once (tries after 0.2, 0.4, 0.8 and 1.6 s: about 3 s) without letting a dead region hold the run up.
BEST_EFFORT_TIMEOUT = 10.0


class Step(Strict):
    id: Ident
    action: str
    description: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    region: str | None = Field(None, description="AWS region for this step's calls; may be a template")
    when: bool | str | None = Field(
        None,
        description="Run the step only when this is set and not false: a template such as "
        "'{{ params.rewrite_records }}'; otherwise the step is skipped (no calls, no outputs)",
    )
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout: PositiveSeconds = Field(
        300.0,
        description="Seconds the step may take, waits and retries included (best-effort steps: 10 s by default)",
    )
    on_failure: OnFailure | None = Field(None, description="Default: the runbook's on_failure")
    best_effort: bool = Field(
        False,
        description="A failure (doing or undoing) is recorded as 'failed (best effort)', warned about, and never "
        "stops or rolls back the run; implies on_failure: continue",
    )
    compensate: Call | None = None
    verify: Verify | None = None

    @model_validator(mode="after")
    def _best_effort(self) -> Step:
        if self.best_effort and self.on_failure not in (None, "continue"):
            raise ValueError(f"a best-effort step always continues; on_failure: {self.on_failure} contradicts it")
        if self.best_effort and "timeout" not in self.model_fields_set:
            # Set as if written, so the definition a run journals (and resumes from) states it.
            return self.model_copy(update={"timeout": BEST_EFFORT_TIMEOUT})
        return self


class Runbook(Strict):
    name: RunbookName
    description: str = ""
    parameters: dict[Ident, Param] = Field(default_factory=dict)
    concurrency: str | None = Field(
        None,
        description="Scope template; runs with the same resolved scope never overlap (default: name). A parameter "
        "passed to a Route 53 zone id or record name counts in Route 53's spelling: 'Z1', 'app.example.com.'",
    )
    on_failure: OnFailure = "rollback"
    call_retry: CallRetrySpec = Field(default_factory=CallRetrySpec)
    preconditions: list[Check] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def policy(self, step: Step) -> OnFailure:
        return "continue" if step.best_effort else step.on_failure or self.on_failure


def load(path: str | Path) -> Runbook:
    """A runbook file, validated; ConfigError names the file and lists every problem with its field path."""
    data = read_yaml(path)
    problems: list[Problem] = []
    model: Runbook | None = None
    try:
        model = validate(Runbook, data, path)
    except ConfigError as e:
        problems += e.problems
    if isinstance(data, dict):
        problems += [p for p in check(data) if p not in problems]
    if problems:
        raise ConfigError(path, problems)
    assert model is not None
    return model


def runbook_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def load_dir(directory: str | Path) -> dict[str, tuple[Path, Runbook]]:
    """Every runbook in a directory by name. One bad file raises its own error; several, one combined."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(directory, "runbooks directory not found")
    found: dict[str, tuple[Path, Runbook]] = {}
    errors: list[ConfigError] = []
    for path in runbook_files(directory):
        try:
            rb = load(path)
        except ConfigError as e:
            errors.append(e)
            continue
        if rb.name in found:
            errors.append(
                ConfigError(path, [Problem("name", f"'{rb.name}' is also defined in {found[rb.name][0].name}")])
            )
            continue
        found[rb.name] = (path, rb)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigError(
            directory,
            [Problem(f"{Path(e.source).name}: {p.where}".rstrip(": "), p.what) for e in errors for p in e.problems],
        )
    return found
