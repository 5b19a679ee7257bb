"""Checks of a runbook that need the action registry: actions, input names and types, template references.

They read the raw YAML data (tolerating wrong shapes, which pydantic reports), so a file with a bad duration
and an unknown action gets both problems in one error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from scaler import template
from scaler.errors import Problem
from scaler.runbook.actions import REGISTRY
from scaler.units import parse_duration

RUN_FIELDS = {("id",), ("runbook",), ("trigger", "kind"), ("trigger", "who"), ("trigger", "why"), ("warnings",)}


def check(data: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    params = data.get("parameters")
    params = set(params) if isinstance(params, Mapping) else set()
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    concurrency = data.get("concurrency")
    if isinstance(concurrency, str):
        problems += refs(concurrency, "concurrency", params, set(), allow_steps=False)
    for i, pre in enumerate(data.get("preconditions") or []):
        if isinstance(pre, Mapping):
            problems += call(pre, f"preconditions[{i}]", params, set(), read_only=True)
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue
        where = f"steps[{i}]"
        sid = str(step.get("id", ""))
        if sid in seen:
            problems.append(Problem(f"{where}.id", f"duplicate step id '{sid}'"))
        problems += call(step, where, params, set(seen))
        problems += refs(step.get("when"), f"{where}.when", params, set(seen))
        problems += wait_fits(step, where)
        # Compensation and verification may also read this step's own outputs.
        for part, read_only in (("compensate", False), ("verify", True)):
            sub = step.get(part)
            if isinstance(sub, Mapping):
                problems += call(sub, f"{where}.{part}", params, seen | {sid}, read_only=read_only)
        seen.add(sid)
    return problems


def call(
    spec: Mapping[str, Any], where: str, params: set[str], steps: set[str], *, read_only: bool = False
) -> list[Problem]:
    """Problems with one `action` + `inputs` (+ `expect`) block."""
    name = spec.get("action")
    inputs = spec.get("inputs") if isinstance(spec.get("inputs"), Mapping) else {}
    problems = refs(inputs, f"{where}.inputs", params, steps)
    problems += refs(spec.get("region"), f"{where}.region", params, steps)
    problems += refs(spec.get("expect"), f"{where}.expect", params, steps)
    if not isinstance(name, str):
        return problems
    action = REGISTRY.get(name)
    if action is None:
        return [
            *problems,
            Problem(f"{where}.action", f"unknown action '{name}' (known: {', '.join(sorted(REGISTRY))})"),
        ]
    if read_only and (action.mutates or action.gate):
        problems.append(Problem(f"{where}.action", f"'{name}' changes things; only read-only actions fit here"))
    if action.gate and where.count(".") > 0:
        problems.append(Problem(f"{where}.action", "'approve' can only be a step of its own"))
    fields = action.inputs.model_fields
    for key, value in inputs.items():
        if key not in fields:
            problems.append(
                Problem(f"{where}.inputs.{key}", f"'{name}' has no input '{key}' (inputs: {', '.join(fields)})")
            )
        elif not list(template.references(value)):
            problems += literal(fields[key], value, f"{where}.inputs.{key}")
    for key, f in fields.items():
        if f.is_required() and key not in inputs:
            problems.append(Problem(f"{where}.inputs.{key}", f"'{name}' needs input '{key}'"))
    return problems


def literal(field: Any, value: Any, where: str) -> list[Problem]:
    """A value written out in the file (no template) must already fit the input's type and bounds."""
    try:
        kind = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        TypeAdapter(kind).validate_python(value)
    except ValidationError as e:
        msg = e.errors(include_url=False)[0]["msg"]
        return [Problem(where, msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg)]
    return []


def located(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(field path, expression) for each reference in a nested value: ('inputs.secret_ids[0]', 'params.x')."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from located(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for n, v in enumerate(value):
            yield from located(v, f"{where}[{n}]")
    else:
        for expr in template.references(value):
            yield where, expr


def refs(value: Any, where: str, params: set[str], steps: set[str], *, allow_steps: bool = True) -> list[Problem]:
    """Problems with the `{{ ... }}` references inside a value, each at its own field path."""
    problems = []
    for at, expr in located(value, where):
        try:
            parts = template.parse(expr)
        except template.TemplateError as e:
            problems.append(Problem(at, str(e)))
            continue
        root, rest = parts[0], parts[1:]
        if root == "params" and rest[0] not in params:
            problems.append(Problem(at, f"'{{{{ {expr} }}}}': no parameter '{rest[0]}'"))
        elif root == "steps" and not allow_steps:
            problems.append(Problem(at, f"'{{{{ {expr} }}}}': step outputs are not known here"))
        elif root == "steps" and (rest[0] not in steps or len(rest) < 2):
            problems.append(Problem(at, f"'{{{{ {expr} }}}}': '{rest[0]}' is not an earlier step (or names no output)"))
        elif root == "run" and tuple(rest) not in RUN_FIELDS:
            problems.append(
                Problem(
                    at, f"'{{{{ {expr} }}}}': run has id, runbook, trigger.kind, trigger.who, trigger.why, warnings"
                )
            )
    return problems


def wait_fits(step: Mapping[str, Any], where: str) -> list[Problem]:
    """A literal wait longer than its step's timeout could never succeed."""
    if step.get("action") != "wait" or not isinstance(step.get("inputs"), Mapping):
        return []
    try:
        seconds = parse_duration(step["inputs"].get("seconds"))
        timeout = parse_duration(step.get("timeout", 300))
    except ValueError:
        return []
    if seconds > timeout:
        return [Problem(f"{where}.inputs.seconds", f"waits {seconds:g}s but the step timeout is {timeout:g}s")]
    return []
