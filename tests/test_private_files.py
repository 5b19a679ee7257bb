"""Files that hold who did what (state, journal, audit logs) are their owner's: created 0600, and an existing one
other users may read is warned about, naming it and its mode, without changing it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from scaler.clock import FakeClock
from scaler.live.decisionlog import DecisionLog
from scaler.runbook.audit import AuditLog
from scaler.runbook.journal import Journal
from scaler.store.sqlite import SqliteStore

OPENERS = {
    "state": lambda p: SqliteStore(p),
    "journal": lambda p: Journal(p),
    "runbook-audit": lambda p: AuditLog(p, clock=FakeClock()),
    "decision-log": lambda p: DecisionLog(p),
}


@pytest.mark.parametrize("kind", OPENERS)
def test_an_existing_file_others_may_read_is_warned_about_and_left_as_it_is(kind, tmp_path: Path, caplog) -> None:
    path = tmp_path / f"{kind}.db"
    OPENERS[kind](path)  # created as this project creates it (the logs on their first line, so make it here)
    path.touch()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        OPENERS[kind](path)
    (told,) = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert "mode 0644" in told and f"chmod 600 {path}" in told
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # an operator's choice is not undone


@pytest.mark.parametrize("kind", OPENERS)
def test_a_private_or_missing_file_says_nothing(kind, tmp_path: Path, caplog) -> None:
    path = tmp_path / f"{kind}.db"
    with caplog.at_level(logging.WARNING):
        OPENERS[kind](path)
        path.touch()
        os.chmod(path, 0o600)
        OPENERS[kind](path)
    assert not [r for r in caplog.records if str(path) in r.getMessage()]
