"""Durable appends for the JSON-lines logs (decision audit, runbook audit): one write, one fsync."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def warn_if_shared(path: Path, what: str) -> None:
    """Warn once, naming the file and its mode, when an existing file others may read holds records that should
    be its owner's only (state, journal, audit logs). Files this project creates are 0600; one made by an older
    version, or by hand, keeps its mode, which may be an operator's choice, so it is said, not changed."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # missing (created 0600 when first written) or unreadable (its open will say so)
    if mode & 0o077:
        log.warning("%s %s is readable or writable by other users (mode %04o); its owner alone should: chmod 600 %s",
                    what, path, mode, path)


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
