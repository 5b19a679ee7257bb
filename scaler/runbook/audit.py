"""The audit trail: one JSON line per provider call and per run event, secrets masked, flushed to disk."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from scaler.appendfile import append_synced, warn_if_shared
from scaler.clock import Clock
from scaler.runbook.redact import Redactor


class AuditLog:
    """Append-only JSON lines. Each line is written whole and fsynced, so a crash loses at most the line
    being written, and lines from threads never interleave."""

    def __init__(self, path: str | Path, *, clock: Clock) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        warn_if_shared(self.path, "the runbook audit trail")
        self.clock = clock
        self._lock = threading.Lock()

    def write(self, event: str, *, redactor: Redactor, **fields: Any) -> None:
        record = {"ts": round(self.clock.now(), 6), "event": event, **redactor(fields)}
        line = json.dumps(record, default=str, sort_keys=False) + "\n"
        # default=str may have turned a secret-bearing object into text, so mask the final line too.
        line = redactor.text(line)
        with self._lock:
            append_synced(self.path, line)
