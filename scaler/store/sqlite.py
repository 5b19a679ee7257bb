"""A StateStore in one SQLite file: one row per key, each save one committed upsert."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from scaler.appendfile import warn_if_shared
from scaler.clock import Clock, SystemClock
from scaler.errors import PermanentError, ProviderError, TransientError
from scaler.store.base import StoreConfig, StoreContext

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    updated REAL NOT NULL              -- unix seconds of the last save, for people reading the file
)
"""

# SQLite result codes that mean "another connection holds the lock": waiting and trying again helps.
# Every other failure (disk full, not a database, read-only file, I/O error) needs a person.
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _error(e: sqlite3.Error | OSError, path: Path, action: str) -> ProviderError:
    """A sqlite3 or file-system error as TransientError (locked) or PermanentError, by result code."""
    code = getattr(e, "sqlite_errorcode", None)
    name = getattr(e, "sqlite_errorname", None) or type(e).__name__
    text = f"sqlite {path}: {action} failed: {name}"
    if code is not None and code & 0xFF in _BUSY:  # the low byte is the primary code (extended codes add bits)
        return TransientError(text, provider="sqlite", code=name)
    return PermanentError(text, provider="sqlite", code=name)


def create_private(path: Path) -> None:
    """Create a missing database file empty and for its owner only (0600); an existing file is left as it is.

    SQLite would create it 0644 (less the umask), readable by every local user, and it gives the -wal and
    -shm files next to it the database file's own mode, so creating this one first covers all three. An
    empty file is an empty database to SQLite. An existing file keeps the mode an operator may have chosen,
    with a warning when other users may read it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        warn_if_shared(path, "the SQLite file")
        return
    os.close(fd)


class SqliteStoreConfig(StoreConfig):
    """State in one SQLite file: for a single controller."""

    kind: Literal["sqlite"] = Field("sqlite", description="State in one SQLite file (a single controller)")
    path: Path = Field(description="SQLite file for the state (created with its directories if missing)")

    def build(self, ctx: StoreContext) -> SqliteStore:
        return SqliteStore(self.path, clock=ctx.clock)


class SqliteStore:
    """Values by key in one SQLite file (WAL journal, synchronous=FULL: a save is on disk when it returns).

    A connection is opened per call, so one store serves any number of threads (and processes sharing the
    file). The parent directory is created if missing, the file (and its -wal and -shm files) 0600.
    """

    def __init__(self, path: str | Path, *, clock: Clock | None = None, timeout: float = 10.0) -> None:
        """timeout: seconds a call waits for another writer's lock before failing as TransientError."""
        self.path = Path(path).expanduser()
        self.clock = clock or SystemClock()
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _error(e, self.path, "create directory") from e
        try:
            create_private(self.path)
        except OSError as e:
            raise _error(e, self.path, "create") from e
        with self._connect("open") as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self, action: str) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection, closed afterwards; every sqlite3 error becomes a ProviderError."""
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            yield db
        except sqlite3.Error as e:
            raise _error(e, self.path, action) from e
        finally:
            if db is not None:
                db.close()

    def load(self, key: str) -> bytes | None:
        """The last saved value, None if never saved."""
        with self._connect(f"load {key!r}") as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def save(self, key: str, value: bytes) -> None:
        """Replace the value: one upsert statement in autocommit mode is its own transaction, so a reader
        (in WAL mode never blocked by the writer) sees the old row or the new one."""
        with self._connect(f"save {key!r}") as db:
            db.execute(
                "INSERT INTO state (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                (key, sqlite3.Binary(value), self.clock.now()),
            )
