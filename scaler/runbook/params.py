"""Run parameters: text from the CLI or a webhook turned into typed values, secrets resolved and masked.

A secret parameter's value is either the secret itself or, written as `env:NAME` / `file:/path` by the config
or the operator, a reference to where it is (a `Ref`). Text from an alert (`Data`) is never a reference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from scaler import secrets
from scaler.errors import Problem
from scaler.runbook.errors import ParamError
from scaler.runbook.model import Param, Runbook
from scaler.runbook.origin import Data, Ref
from scaler.runbook.redact import MASK
from scaler.secrets import is_reference

__all__ = ["Data", "Ref", "convert", "dereference", "for_journal", "resolve_secrets", "restored", "typed"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def convert(spec: Param, value: Any) -> Any:
    """One value as `spec.type`; raises ValueError saying what was expected."""
    kind = spec.type
    if kind == "string":
        if isinstance(value, bool | dict | list):
            raise ValueError("expected text")
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            return int(str(value).strip()) if not isinstance(value, int | float) else int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    # list: a YAML/JSON list, a JSON array in text, or comma-separated text ("a, b,c" -> [a, b, c])
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("expected a JSON list or comma-separated values") from None
        if not isinstance(items, list):
            raise ValueError("expected a JSON list or comma-separated values")
        return [str(v) for v in items]
    return [part.strip() for part in text.split(",") if part.strip()]


def dereference(name: str, value: str) -> str:
    """What secret parameter `name`'s reference points at ('env:SLACK_URL', 'file:/run/secrets/x'), read
    by scaler.secrets; ParamError naming the parameter and where it looked, never the value."""
    try:
        return secrets.dereference(value)
    except secrets.SecretUnavailable as e:
        raise ParamError(f"parameter {name}", str(e)) from None


def typed(runbook: Runbook, given: Mapping[str, Any]) -> dict[str, Any]:
    """Given values (text or native) checked against the runbook, defaults filled in; every problem at once.

    A secret value that is a reference (`env:`/`file:`, and not `Data` from an alert) is returned as a `Ref`
    to resolve later; any other secret value, as the secret itself.
    """
    problems: list[Problem] = []
    out: dict[str, Any] = {}
    for name in given:
        if name not in runbook.parameters:
            known = ", ".join(runbook.parameters) or "none"
            problems.append(Problem(f"params.{name}", f"unknown parameter (known: {known})"))
    for name, spec in runbook.parameters.items():
        if name in given and given[name] is not None:
            raw = given[name]
        elif spec.is_required:
            problems.append(
                Problem(f"params.{name}", "required" + (f": {spec.description}" if spec.description else ""))
            )
            continue
        elif spec.default is None:
            out[name] = None
            continue
        else:
            raw = spec.default
        if spec.secret and is_reference(raw) and not isinstance(raw, Data):
            out[name] = Ref(raw)
            continue
        try:
            value = convert(spec, raw)
        except ValueError as e:
            shown = MASK if spec.secret else raw
            problems.append(Problem(f"params.{name}", f"{e}".replace(repr(raw), repr(shown))))
            continue
        if spec.choices is not None and value not in [convert(spec, c) for c in spec.choices]:
            problems.append(Problem(f"params.{name}", f"must be one of {spec.choices}"))
            continue
        out[name] = value
    if problems:
        raise ParamError(f"runbook {runbook.name}", problems)
    return out


def resolve_secrets(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the references (`Ref`, from typed()) of secret parameters by what they point at. Any other
    value is the secret itself, even one that starts with env: or file:."""
    out = dict(values)
    for name, spec in runbook.parameters.items():
        if spec.secret and isinstance(out.get(name), Ref):
            out[name] = dereference(name, out[name])
    return out


def for_journal(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    """What may be written down: secrets become "***", except references, which are not secret."""
    out = dict(values)
    for name, spec in runbook.parameters.items():
        if spec.secret and out.get(name) is not None and not isinstance(out[name], Ref):
            out[name] = MASK
    return out


def restored(runbook: Runbook, journaled: Mapping[str, Any], held: Mapping[str, str]) -> dict[str, Any]:
    """A run's values again, from what for_journal wrote and the secret values held in memory.

    A secret written in clear is a reference (for_journal masks every other secret), so it is a `Ref` again;
    a held value is the secret itself. A secret still masked was given by value to another process.
    """
    out = dict(journaled)
    for name, spec in runbook.parameters.items():
        if spec.secret and out.get(name) not in (None, MASK):
            out[name] = Ref(out[name])
    out.update(held)
    return out
