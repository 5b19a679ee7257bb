"""Loading YAML into pydantic models, turning every validation problem into one ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from scaler.errors import ConfigError, Problem

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not be silently ignored), and a
    parsed config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_path(loc: tuple) -> str:
    """('behavior', 'scale_up', 'policies', 0, 'value') -> 'behavior.scale_up.policies[0].value'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from(err: ValidationError) -> list[Problem]:
    """Every pydantic error as a Problem, skipping pydantic's union/tag noise in the path."""
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        problems.append(Problem(field_path(loc), msg))
    return problems


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key given twice in one mapping."""


MAX_YAML_BYTES = 1 << 20  # the largest config we read; the shipped ones are a few KiB


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    PyYAML keeps the last value silently, so `min: 2` ... `min: 1` in one mapping would quietly use 1. Keys
    brought in by a merge (`<<: *base`) may still be overridden: that is what a merge is for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        if isinstance(node, yaml.MappingNode):
            first: dict[object, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:  # an unhashable key: PyYAML's own error for it follows
                    continue
                if earlier is not key_node:
                    raise _DuplicateKey(
                        problem=f"duplicate key {str(key)!r} (first at line {earlier.start_mark.line + 1})",
                        problem_mark=key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> object:
    """Parse a YAML file, or raise ConfigError naming the file and the line (a key given twice included)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(path, f"larger than {MAX_YAML_BYTES // 1024} KiB: not a policy, runbook or config")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only, no Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        what = problem if isinstance(e, _DuplicateKey) else f"not valid YAML: {problem}"
        raise ConfigError(path, [Problem(where, what)]) from None
    except RecursionError:
        raise ConfigError(path, "nested too deeply to be a policy, runbook or config") from None


def validate(model: type[M], data: object, source: str | Path) -> M:
    """Validate already-parsed data, raising one ConfigError with every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, "expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, problems_from(e)) from None


def load(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML file as `model`."""
    return validate(model, read_yaml(path), path)
