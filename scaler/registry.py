"""The one shape of a pluggable provider: a config model that names its `kind` and builds its object.

Metric sources, scale targets, state stores and leases all work alike:

    class AsgConfig(TargetConfig):               # in the provider's own module, next to the provider
        kind: Literal["aws-asg"] = ...
        name: str = Field(description=...)
        def build(self, ctx: TargetContext) -> AsgTarget: ...

    KINDS = {"aws-asg": AsgConfig, ...}          # the folder's registry.py: one line per provider

and a config section is read with `by_kind(KINDS, section, where=..., problems=...)`, which picks the model
by the section's `kind` and reports every problem under the section's field path. A registry imports its
providers; a provider imports only its folder's base module and this one, never the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from scaler.errors import ConfigError, Problem
from scaler.yamlio import Strict, problems_from


class ProviderConfig(Strict):
    """Base of every provider's config section (strict and frozen). A provider narrows `kind` to its own
    Literal and implements build."""

    kind: str = Field(description="Which provider: one of the keys of its registry")

    def build(self, ctx: Any) -> Any:
        """The object this config describes, made with what `ctx` shares (clients, clock, base directory).

        Building connects to nothing; the first provider call happens when the object is used.
        """
        raise NotImplementedError(f"{type(self).__name__} (kind {self.kind!r}) is not a registered provider")


C = TypeVar("C", bound=ProviderConfig)


def by_kind(
    registry: Mapping[str, type[C]],
    data: object,
    *,
    where: str = "",
    problems: list[Problem],
    default: str | None = None,
) -> C | None:
    """`data` validated as the model its `kind` picks from `registry`, or None with every problem appended
    under `where` (e.g. "policies[0].targets[1]" + ".region"). `default` is the kind of a section that
    names none (the prometheus section, whose kind is its name)."""
    if not isinstance(data, Mapping):
        problems.append(Problem(where, "expected a mapping with a 'kind'"))
        return None
    kind = data.get("kind", default)
    if not isinstance(kind, str) or kind not in registry:
        # sorted: the message reads the same however the registry happens to be ordered
        problems.append(Problem(_under(where, "kind"), f"expected one of {', '.join(sorted(registry))}, "
                                f"got {kind!r}"))
        return None
    try:
        return registry[kind].model_validate(dict(data))
    except ValidationError as e:
        problems.extend(Problem(_under(where, p.where), p.what) for p in problems_from(e))
        return None


def parse(registry: Mapping[str, type[C]], data: object, *, source: str, default: str | None = None) -> C:
    """One section on its own (a file or payload of just this section): as by_kind, raising one
    ConfigError that names `source` and lists every problem."""
    problems: list[Problem] = []
    found = by_kind(registry, data, problems=problems, default=default)
    if found is None:
        raise ConfigError(source, problems)
    return found


def _under(where: str, path: str) -> str:
    """'state' + 'path' -> 'state.path'; '' + 'kind' -> 'kind'; 'state' + '' -> 'state'."""
    if not where or not path:
        return where or path
    return f"{where}{path}" if path.startswith("[") else f"{where}.{path}"
