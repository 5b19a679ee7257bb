"""The one reader of secrets: from an environment variable or a file a config names, never from the config.

Every credential scaler uses (the Prometheus password or bearer token, the webhook token of `scaler
serve`, a notification URL, a runbook's secret parameter) is read here, so each gets the same checks and
the same messages: a variable not set or a file not readable; either one empty, oversized or not UTF-8.
A message names the variable or the file and what is wrong with it, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scaler.errors import ScalerError

MAX_BYTES = 64 * 1024  # a token, a password or a URL; anything larger is not what the field is for
PREFIXES = ("env:", "file:")


class SecretUnavailable(ScalerError):
    """A secret cannot be read; the message says where it was looked for and why (never the value)."""


def read(*, env: str | None = None, file: str | Path | None = None, base: Path | None = None,
         environ: Mapping[str, str] | None = None) -> str:
    """The secret in environment variable `env`, or in `file` (relative to `base`), without the
    surrounding whitespace (a file's trailing newline). Exactly one of env and file."""
    if (env is None) == (file is None):
        raise ValueError("give exactly one of env or file")
    if env is not None:
        if not env:
            raise SecretUnavailable("the environment variable's name is empty")
        environ = os.environ if environ is None else environ
        value = environ.get(env)
        if value is None:
            raise SecretUnavailable(f"environment variable {env} is not set")
        where = f"environment variable {env}"
        # os.environ keeps bytes that are not UTF-8 as lone surrogates, which would only fail later, when
        # the value is sent; refuse them here, like such a file ("surrogatepass" encodes any str, and the
        # strict decode then refuses every surrogate)
        raw = value.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_BYTES:
            raise SecretUnavailable(f"{where} holds more than {MAX_BYTES} bytes")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable(f"{where} is not UTF-8 text") from None
    else:
        if not str(file):  # Path("") would be ".", the working directory
            raise SecretUnavailable("the file name is empty")
        path = Path(file)
        if base is not None and not path.is_absolute():
            path = base / path
        where = str(path)
        value = _read_file(path)
    value = value.strip()
    if not value:
        raise SecretUnavailable(f"{where} is empty")
    return value


def _read_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SecretUnavailable(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise SecretUnavailable(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{path} is not UTF-8 text") from None


def one_place(model: object, name: str) -> None:
    """The config rule for a secret's place: exactly one of `<name>_env` and `<name>_file` is set on `model`
    (a pydantic model's after-validator calls this; the ValueError becomes a field problem)."""
    if (getattr(model, f"{name}_env") is None) == (getattr(model, f"{name}_file") is None):
        raise ValueError(f"set exactly one of {name}_env or {name}_file")


def is_reference(value: object) -> bool:
    """'env:NAME' or 'file:/path': where a secret is, written where its value would otherwise go."""
    return isinstance(value, str) and value.startswith(PREFIXES)


def dereference(value: str, *, base: Path | None = None, environ: Mapping[str, str] | None = None) -> str:
    """What a reference points at: 'env:SLACK_URL' -> the variable's value, 'file:/run/secrets/x' -> the
    file's text."""
    if value.startswith("env:"):
        return read(env=value[4:], environ=environ)
    if value.startswith("file:"):
        return read(file=value[5:], base=base)
    raise ValueError("a secret reference starts with env: or file:")
