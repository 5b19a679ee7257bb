"""Durable appends for the JSON-lines logs (decision audit, runbook audit): one write, one fsync."""

from __future__ import annotations

import os
from pathlib import Path


def append_synced(path: Path, text: str) -> None:
    """Append `text` in one write(2) on an O_APPEND file (mode 0600), then fsync.

    One write keeps lines from concurrent writers whole; the fsync means a crash loses at most this call's
    lines. Callers serialize their own writes with a lock.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
