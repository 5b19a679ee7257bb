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


def read_yaml(path: str | Path) -> object:
    """Parse a YAML file, or raise ConfigError naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, [Problem(where, f"not valid YAML: {problem}")]) from None


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
