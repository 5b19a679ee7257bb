"""A tiny, safe `{{ dotted.path }}` resolver for step inputs: lookups only, no expressions, no eval."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from scaler.runbook.errors import TemplateError

# `{{ params.zone_id }}`, `{{ steps.dns.previous.0.Name }}`, `{{ run.trigger.who }}`.
_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
ROOTS = ("params", "steps", "run")


def references(value: Any) -> Iterator[str]:
    """Every `{{ ... }}` expression text found in a (nested) value, in order."""
    if isinstance(value, str):
        for m in _EXPR.finditer(value):
            yield m.group(1)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from references(v)


def parse(expr: str) -> tuple[str, ...]:
    """'steps.dns.change_id' -> ('steps', 'dns', 'change_id'); raises TemplateError on anything else."""
    if not _PATH.match(expr):
        raise TemplateError(f"'{{{{ {expr} }}}}' is not a reference (use e.g. {{{{ params.name }}}})")
    parts = tuple(expr.split("."))
    if parts[0] not in ROOTS:
        raise TemplateError(f"'{{{{ {expr} }}}}' must start with one of: {', '.join(ROOTS)}")
    if len(parts) < 2:
        raise TemplateError(f"'{{{{ {expr} }}}}' names no field")
    return parts


def lookup(scope: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = scope
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        if isinstance(node, Mapping):
            if part not in node:
                raise TemplateError(f"'{{{{ {'.'.join(parts)} }}}}': nothing at '{where}'")
            node = node[part]
        elif isinstance(node, list | tuple) and part.isdigit():
            if int(part) >= len(node):
                raise TemplateError(f"'{{{{ {'.'.join(parts)} }}}}': index out of range at '{where}'")
            node = node[int(part)]
        else:
            raise TemplateError(f"'{{{{ {'.'.join(parts)} }}}}': cannot look inside '{where}'")
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def render(value: Any, scope: Mapping[str, Any], *, missing: Callable[[str], Any] | None = None) -> Any:
    """`value` with every reference replaced from `scope`.

    A string that is exactly one reference becomes the referenced value itself (a list stays a list,
    None stays None); references inside longer text are spliced in as text. `missing(expr)`, if given,
    supplies a stand-in for references that do not resolve (plans show them unresolved).
    """
    if isinstance(value, str):
        whole = _EXPR.fullmatch(value.strip())
        if whole and value.strip() == value:
            return _resolve(whole.group(1), scope, missing)
        return _EXPR.sub(lambda m: _text(_resolve(m.group(1), scope, missing)), value)
    if isinstance(value, Mapping):
        return {k: render(v, scope, missing=missing) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, scope, missing=missing) for v in value]
    return value


def _resolve(expr: str, scope: Mapping[str, Any], missing: Callable[[str], Any] | None) -> Any:
    parts = parse(expr)
    try:
        return lookup(scope, parts)
    except TemplateError:
        if missing is None:
            raise
        return missing(expr)
