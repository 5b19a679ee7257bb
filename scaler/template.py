"""The one `{{ dotted.path }}` template engine (runbook inputs, trigger-rule params): lookups only, no eval."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from scaler.errors import ScalerError

# `{{ params.zone_id }}`, `{{ steps.dns.previous.0.Name }}`, `{{ run.trigger.who }}`, `{{ labels.region }}`.
_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ScalerError):
    """A `{{ ... }}` reference that is not allowed or cannot be resolved (unknown parameter, label, output)."""


@dataclass(frozen=True)
class Grammar:
    """The names a reference may start with, by how many fields follow them.

    `nested` roots take one or more (`{{ steps.dns.previous.0.Name }}`), `keyed` roots exactly one name
    (`{{ labels.region }}`), `bare` roots none (`{{ status }}`).
    """

    nested: tuple[str, ...] = ()
    keyed: tuple[str, ...] = ()
    bare: tuple[str, ...] = ()

    @property
    def roots(self) -> tuple[str, ...]:
        return self.nested + self.keyed + self.bare

    def usage(self) -> str:
        """'{{ labels.NAME }}, {{ status }} or {{ receiver }}': every form, for messages."""
        forms = [f"{{{{ {r}.NAME }}}}" for r in self.nested + self.keyed] + [f"{{{{ {r} }}}}" for r in self.bare]
        return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]

    def example(self) -> str:
        return f"{self.roots[0]}.name" if self.nested or self.keyed else self.roots[0]


RUNBOOK = Grammar(nested=("params", "steps", "run"))


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


def parse(expr: str, grammar: Grammar = RUNBOOK) -> tuple[str, ...]:
    """'steps.dns.change_id' -> ('steps', 'dns', 'change_id'); raises TemplateError on anything else."""
    if not _PATH.match(expr):
        raise TemplateError(f"'{{{{ {expr} }}}}' is not a reference (use e.g. {{{{ {grammar.example()} }}}})")
    parts = tuple(expr.split("."))
    root, fields = parts[0], parts[1:]
    if root not in grammar.roots:
        raise TemplateError(f"'{{{{ {expr} }}}}' must start with one of: {', '.join(grammar.roots)}")
    if root in grammar.bare:
        if fields:
            raise TemplateError(f"'{{{{ {expr} }}}}': {root} has no fields")
        return parts
    if not fields:
        raise TemplateError(f"'{{{{ {expr} }}}}' names no field")
    if root in grammar.keyed and (len(fields) > 1 or not _NAME.match(fields[0])):
        raise TemplateError(f"'{{{{ {expr} }}}}': {root} takes one name, like {{{{ {root}.NAME }}}}")
    return parts


def check(text: str, grammar: Grammar) -> None:
    """Raise TemplateError unless every reference fits `grammar` and every `{{` or `}}` belongs to one.

    For values whose braces are only ever templates (trigger-rule params): a stray `}}` there is a typo that
    would otherwise be passed on as text. Runbook inputs may hold JSON, so they are not checked this way.
    """
    for expr in references(text):
        parse(expr, grammar)
    leftover = _EXPR.sub("", text)
    if "{{" in leftover or "}}" in leftover:
        raise TemplateError(f"{text!r} has a '{{{{' or '}}}}' that is not part of a reference")


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


def render(value: Any, scope: Mapping[str, Any], *, missing: Callable[[str], Any] | None = None,
           grammar: Grammar = RUNBOOK) -> Any:
    """`value` with every reference replaced from `scope`.

    A string that is exactly one reference becomes the referenced value itself (a list stays a list,
    None stays None); references inside longer text are spliced in as text. Either way a looked-up value
    is never scanned for references itself, so text taken from an alert or a step output cannot inject
    one. `missing(expr)`, if given, supplies a stand-in for references that do not resolve (plans show
    them unresolved) or raises a more specific TemplateError.
    """
    if isinstance(value, str):
        # The first reference must end where the text ends: `{{ a }}-{{ b }}` is two references, not one
        # (a fullmatch would stretch the lazy `.*?` across the `}}-{{` in between).
        first = _EXPR.match(value)
        if first and first.end() == len(value):
            return _resolve(first.group(1), scope, missing, grammar)
        return _EXPR.sub(lambda m: _text(_resolve(m.group(1), scope, missing, grammar)), value)
    if isinstance(value, Mapping):
        return {k: render(v, scope, missing=missing, grammar=grammar) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, scope, missing=missing, grammar=grammar) for v in value]
    return value


def _resolve(expr: str, scope: Mapping[str, Any], missing: Callable[[str], Any] | None, grammar: Grammar) -> Any:
    parts = parse(expr, grammar)
    try:
        return lookup(scope, parts)
    except TemplateError:
        if missing is None:
            raise
        return missing(expr)
