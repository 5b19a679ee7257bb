"""A run's concurrency scope: the `concurrency` template over the parameters, each spelt as its action reads it.

Two runs of one record must meet in one scope however the record was written: `/hostedzone/Z1` with
`app.example.com`, and `Z1` with `APP.example.com.`, are the same record to Route 53, so both runs get the scope
`dns:Z1/app.example.com.` and the second is refused. A parameter passed whole to an input that names a
resource takes that input's canonical spelling (Inputs.canonical); any other value, ARNs included, is taken as
given, since two spellings of those are two different resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from scaler import template
from scaler.runbook.actions import REGISTRY
from scaler.runbook.model import Call, Runbook


def scope(runbook: Runbook, values: Mapping[str, Any]) -> str:
    """The scope of a run with these parameter values (the runbook's name if it sets no `concurrency`)."""
    spelt = dict(values)
    for name, spell in spellings(runbook).items():
        if isinstance(spelt.get(name), str):
            spelt[name] = spell(spelt[name])
    return str(template.render(runbook.concurrency or runbook.name, {"params": spelt, "steps": {}, "run": {}}))


def spellings(runbook: Runbook) -> dict[str, Callable[[str], str]]:
    """Parameter -> its canonical spelling, for each parameter passed whole ("{{ params.zone_id }}") to an
    input with one. A parameter passed to inputs that spell it differently keeps its text as given."""
    found: dict[str, set[Callable[[str], str]]] = {}
    for call in _calls(runbook):
        action = REGISTRY.get(call.action)
        if action is None:
            continue
        for key, spell in action.inputs.canonical.items():
            param = _whole_param(call.inputs.get(key))
            if param is not None:
                found.setdefault(param, set()).add(spell)
    return {param: next(iter(spells)) for param, spells in found.items() if len(spells) == 1}


def _calls(runbook: Runbook) -> Iterator[Call]:
    yield from runbook.preconditions
    for step in runbook.steps:
        yield step
        if step.compensate is not None:
            yield step.compensate
        if step.verify is not None:
            yield step.verify


def _whole_param(value: Any) -> str | None:
    """'x' for a value that is exactly "{{ params.x }}"; None for anything else (text around it, two
    references, a step output)."""
    if not isinstance(value, str) or not (value.startswith("{{") and value.endswith("}}")):
        return None
    exprs = list(template.references(value))
    if len(exprs) != 1:
        return None
    try:
        parts = template.parse(exprs[0])
    except template.TemplateError:
        return None
    return parts[1] if len(parts) == 2 and parts[0] == "params" else None
