"""Process logging: JSON lines or plain text, chosen at startup; provider libraries' wire logging always off."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")

# Libraries that log what goes over the wire at DEBUG: botocore logs every request's parameters and body
# (PutSecretValue and PutParameter: the new secret) and every response body (GetSecretValue and
# GetParameter: the secret again); urllib3 logs URLs with their query strings; the kubernetes client logs
# response bodies. Whatever level the process logs at, these log at INFO and above only ("Found
# credentials in environment variables" stays visible), and the handler drops anything below INFO from
# them even if a logger's level is lowered again later.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "kubernetes")
WIRE_FLOOR = logging.INFO

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON object.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def is_wire(name: str) -> bool:
    """Whether a logger name is one of WIRE_LOGGERS or below one ("botocore.endpoint")."""
    return any(name == w or name.startswith(w + ".") for w in WIRE_LOGGERS)


class WireFilter(logging.Filter):
    """Drops records below WIRE_FLOOR from the wire loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= WIRE_FLOOR or not is_wire(record.name)


class JsonFormatter(logging.Formatter):
    """{"ts": ..., "level": ..., "logger": ..., "msg": ..., **extra}; exceptions as one `error` string."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record is written, not as it was at setup: a command run
    in-process (a CLI test runner) swaps sys.stderr and closes its stand-in afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(WireFilter())

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass  # StreamHandler.__init__ assigns it; the property always answers sys.stderr


def quiet_wire_loggers(level: int) -> None:
    """Wire loggers at `level` or WIRE_FLOOR, whichever is higher: at DEBUG they stay at INFO."""
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(WIRE_FLOOR, level))


def setup(level: str = "info", fmt: str = "json") -> None:
    """Log `level` and above to stderr as `fmt` (json or text); every command that logs calls this.

    Calling it again replaces the handler it installed before; handlers installed by others stay.
    """
    handler = StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_wire_loggers(root.level)
