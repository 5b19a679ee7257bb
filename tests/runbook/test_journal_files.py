"""The journal's files: readable by their owner only, and every error about them names the file."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaler.errors import ScalerError
from scaler.runbook.errors import RunNotFound
from scaler.runbook.journal import Journal
from scaler.runbook.records import Trigger

WHO = Trigger(kind="manual", who="alice", why="drill")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file created without a mode is readable by everyone (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_journal_and_its_wal_and_shm_are_for_the_owner_only(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "state" / "journal.db"
    journal = Journal(path)
    reader = sqlite3.connect(path)  # held open, so the WAL and shared-memory files stay while we look
    try:
        reader.execute("SELECT count(*) FROM runs").fetchone()
        journal.create(run_id="r-1", runbook="x", definition={}, params={}, trigger=WHO, scope="x",
                       status="running", dry_run=False, steps=[("a", "wait")], now=1.0)
        files = [path, path.with_name("journal.db-wal"), path.with_name("journal.db-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    finally:
        reader.close()


def test_a_file_that_is_not_a_journal_is_named(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"not a database at all, " * 200)
    with pytest.raises(ScalerError) as caught:
        Journal(path)
    assert str(caught.value) == f"journal {path}: file is not a database"


def test_a_journal_whose_directory_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    path = tmp_path / "state" / "journal.db"
    with pytest.raises(ScalerError) as caught:
        Journal(path)
    assert str(caught.value).startswith(f"journal {path}: cannot create its directory")


def test_an_unknown_run_names_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    for read in (journal.get, journal.definition):
        with pytest.raises(RunNotFound) as caught:
            read("r-404")
        assert str(caught.value) == f"no run r-404 in journal {path}"
