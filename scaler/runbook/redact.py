"""Removing secret values from anything written down: journal rows, audit lines, logs, CLI output."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

# Keys whose values are secret whatever they contain (provider responses carrying secret material).
SECRET_KEYS = frozenset({"SecretString", "SecretBinary", "Password", "password", "secret_value"})


class Redactor:
    """Knows the secret values of a run and masks them wherever they appear, also inside longer text.

    Values are masked by content, not by where they came from, so a secret echoed back inside an error
    message or a provider response is caught too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, value: str | None) -> None:
        if isinstance(value, str) and value:
            with self._lock:
                self._secrets.add(value)

    def text(self, value: str) -> str:
        with self._lock:
            # Longest first, so a secret that contains another shorter one is masked whole.
            known = sorted(self._secrets, key=len, reverse=True)
        for s in known:
            if s in value:
                value = value.replace(s, MASK)
        return value

    def __call__(self, value: Any) -> Any:
        """A copy of `value` (str, bytes, mapping, list, scalar) with secrets masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return MASK if value else value
        if isinstance(value, Mapping):
            secure = value.get("Type") == "SecureString"  # SSM: the Value next to it is secret
            out = {}
            for k, v in value.items():
                if k in SECRET_KEYS or (secure and k == "Value"):
                    out[str(k)] = MASK
                else:
                    out[str(k)] = self(v)
            return out
        if isinstance(value, list | tuple | set | frozenset):
            return [self(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A handler filter that masks a Redactor's secrets in every record passing through the handler."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        return True
