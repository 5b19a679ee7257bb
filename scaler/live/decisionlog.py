"""The decision audit log: one JSON line per target per tick, each tick's lines written and fsynced at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scaler.appendfile import append_synced, warn_if_shared


class DecisionLog:
    """Append-only JSON lines. A tick's lines go out in one write and one fsync: 1,000 targets cost one
    disk flush, and a crash loses at most the tick being written. Rotate it with logrotate `copytruncate`."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        warn_if_shared(self.path, "the decision audit log")
        self._lock = threading.Lock()

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False, default=str) + "\n" for r in records)
        if not text:
            return
        with self._lock:
            append_synced(self.path, text)


def read_tail(path: str | Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The last `limit` records (for `scaler status --log`), skipping a torn last line."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-limit:]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
