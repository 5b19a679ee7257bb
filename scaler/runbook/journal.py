"""The run journal: every run, step, attempt and approval in SQLite, each change committed durably."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from scaler import retry
from scaler.clock import SystemClock
from scaler.errors import PermanentError, TransientError
from scaler.runbook.errors import RunBusy, RunConflict, RunNotFound
from scaler.runbook.records import ACTIVE, Approval, RunRecord, StepRecord, Trigger
from scaler.store.sqlite import create_private

log = logging.getLogger("scaler.runbook")
T = TypeVar("T")

# A writer waits this long for SQLite's write lock (its busy handler) before the transaction counts as
# having met a lock; a journal transaction holds the lock for milliseconds, so 10 s means a stuck writer.
BUSY_TIMEOUT = 10.0
# ... and such a transaction is tried again, from the start, after 0.05, 0.1, 0.2, 0.4 s (plus up to 0.05 s
# of jitter): 5 tries, at most ~5 x 10 s + 0.8 s before the lock is reported as JournalBusy.
BUSY_RETRY = retry.RetryPolicy(attempts=5, initial=0.05, max_delay=1.0, jitter=0.05)
# SQLITE_BUSY (another connection holds the lock, or a snapshot went stale) and SQLITE_LOCKED; extended
# codes such as SQLITE_BUSY_SNAPSHOT (517) carry the primary code in their low byte.
_LOCK_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    definition TEXT NOT NULL,          -- the runbook as it was at start; resume follows this, not the file
    params TEXT NOT NULL,              -- JSON, secrets masked
    trigger_kind TEXT NOT NULL,
    trigger_who TEXT NOT NULL,
    trigger_why TEXT NOT NULL,
    idem_key TEXT UNIQUE,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    checked INTEGER NOT NULL DEFAULT 0, -- preconditions passed
    waiting_on TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_scope ON runs (scope, status);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    outputs TEXT,                      -- JSON, redacted; NULL until the action completed
    memo TEXT NOT NULL DEFAULT '{}',   -- JSON: state read before acting, kept for re-runs
    error TEXT,
    started_at REAL,
    finished_at REAL,
    compensation TEXT,
    compensation_error TEXT,
    PRIMARY KEY (run_id, id)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (run_id, step_id, attempt)
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL,
    gate TEXT NOT NULL,
    who TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, gate)
);
"""


def default_state_dir() -> Path:
    """$SCALER_STATE_DIR, else $XDG_STATE_HOME/scaler, else ~/.local/state/scaler."""
    if os.environ.get("SCALER_STATE_DIR"):
        return Path(os.environ["SCALER_STATE_DIR"])
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "scaler"
    return Path.home() / ".local" / "state" / "scaler"


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class JournalBusy(TransientError):
    """The journal stayed locked by other writers through every retry of one transaction."""


class JournalError(PermanentError):
    """The journal file cannot be used as it is (not a database, unreadable, corrupt, disk full)."""


def _locked(error: sqlite3.Error) -> bool:
    return ((getattr(error, "sqlite_errorcode", None) or 0) & 0xFF) in _LOCK_CODES


class Journal:
    """One SQLite file, created 0600 (its -wal and -shm files too). Every method is one committed transaction
    (synchronous=FULL: on disk on return); an error other than a lock names the file (JournalError).

    Connections are opened per call, so one Journal serves any number of threads and processes. A
    transaction that writes takes the write lock when it begins (BEGIN IMMEDIATE), so waiting for another
    writer happens there, under the busy timeout. A deferred transaction that read first could not wait: its
    snapshot may be stale by the time it writes, and SQLite refuses that upgrade at once ("database is
    locked"). A transaction that still meets a lock is run again from the start, so a busy journal delays a
    run but never fails it; only a lock that outlasts every retry is an error (JournalBusy, transient).
    """

    def __init__(self, path: str | Path, *, sleep: Callable[[float], None] | None = None) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JournalError(f"journal {self.path}: cannot create its directory: {e.strerror or e}",
                               provider="journal", code=type(e).__name__) from e
        try:
            create_private(self.path)  # 0600: runs name who did what, and reference where secrets are
        except OSError as e:
            raise JournalError(f"journal {self.path}: cannot create it: {e.strerror or e}", provider="journal",
                               code=type(e).__name__) from e
        # Waiting for another process's lock is real time, whatever clock the runs themselves use.
        self._sleep = sleep or SystemClock().sleep
        self._retrying(self._create_schema)

    def _create_schema(self) -> None:
        with self._lock_errors():
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later connection uses it
                db.executescript(_SCHEMA)
            finally:
                db.close()

    @contextlib.contextmanager
    def _lock_errors(self) -> Iterator[None]:
        """SQLite's "locked" and "busy" become JournalBusy (retried); any other SQLite error becomes
        JournalError naming the file."""
        try:
            yield
        except sqlite3.OperationalError as e:
            if not _locked(e):
                raise self._error(e) from e
            code = getattr(e, "sqlite_errorname", None) or "SQLITE_BUSY"
            raise JournalBusy(
                f"journal {self.path} is locked by another writer ({code})", provider="journal", code=code
            ) from e
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _error(self, e: sqlite3.Error) -> JournalError:
        code = getattr(e, "sqlite_errorname", None) or type(e).__name__
        return JournalError(f"journal {self.path}: {e}", provider="journal", code=code)

    def _retrying(self, fn: Callable[[], T]) -> T:
        def note(n: int, error: BaseException, delay: float) -> None:
            log.debug("journal transaction try %d met a lock (%s); trying again in %.2fs", n, error, delay)

        return retry.call(fn, policy=BUSY_RETRY, sleep=self._sleep, on_retry=note)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(db) in one write transaction, committed durably; run again from the start if it met a lock."""
        return self._retrying(lambda: self._once(fn, "BEGIN IMMEDIATE"))

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(db) on one consistent snapshot (a deferred transaction that never writes)."""
        return self._retrying(lambda: self._once(fn, "BEGIN"))

    def _once(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        with self._lock_errors():
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                db.execute("PRAGMA synchronous=FULL")
                db.execute(begin)
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # the original error matters, not this one
                            db.execute("ROLLBACK")
                    raise
                return result
            finally:
                db.close()

    # -- runs ---------------------------------------------------------------------------------------

    def create(
        self,
        *,
        run_id: str,
        runbook: str,
        definition: Mapping[str, Any],
        params: Mapping[str, Any],
        trigger: Trigger,
        scope: str,
        status: str,
        dry_run: bool,
        steps: list[tuple[str, str]],
        now: float,
        waiting_on: str | None = None,
    ) -> RunRecord:
        """Insert a run, unless its idempotency key was seen (-> that run) or its scope is busy (RunConflict).

        The write lock is taken at BEGIN, so check-then-insert is atomic across processes.
        """

        def insert(db: sqlite3.Connection) -> RunRecord:
            if trigger.key is not None:
                row = db.execute("SELECT id FROM runs WHERE idem_key = ?", (trigger.key,)).fetchone()
                if row:
                    return self._load(db, row[0])
            if not dry_run:
                marks = ",".join("?" * len(ACTIVE))
                row = db.execute(
                    f"SELECT id FROM runs WHERE scope = ? AND dry_run = 0 AND status IN ({marks}) LIMIT 1",
                    (scope, *sorted(ACTIVE)),
                ).fetchone()
                if row:
                    raise RunConflict(
                        f"scope '{scope}' is held by unfinished run {row[0]}; finish or resume it first",
                        scope=scope,
                        holder=row[0],
                    )
            db.execute(
                "INSERT INTO runs (id, runbook, definition, params, trigger_kind, trigger_who, trigger_why, "
                "idem_key, scope, status, dry_run, waiting_on, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    runbook,
                    _json(definition),
                    _json(params),
                    trigger.kind,
                    trigger.who,
                    trigger.why,
                    None if dry_run else trigger.key,
                    scope,
                    status,
                    int(dry_run),
                    waiting_on,
                    now,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO steps (run_id, idx, id, action, status) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, i, sid, action, "planned" if dry_run else "pending")
                    for i, (sid, action) in enumerate(steps)
                ],
            )
            return self._load(db, run_id)

        return self._write(insert)

    def get(self, run_id: str) -> RunRecord:
        return self._read(lambda db: self._load(db, run_id))

    def definition(self, run_id: str) -> dict[str, Any]:
        row = self._read(lambda db: db.execute("SELECT definition FROM runs WHERE id = ?", (run_id,)).fetchone())
        if row is None:
            raise self._not_found(run_id)
        return json.loads(row[0])

    def checked(self, run_id: str) -> bool:
        row = self._read(lambda db: db.execute("SELECT checked FROM runs WHERE id = ?", (run_id,)).fetchone())
        return bool(row and row[0])

    def runs(self, limit: int = 50) -> list[RunRecord]:
        def newest(db: sqlite3.Connection) -> list[RunRecord]:
            ids = [
                r[0] for r in db.execute("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
            ]
            return [self._load(db, i) for i in ids]

        return self._read(newest)

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        now: float,
        waiting_on: str | None = None,
        error: str | None = None,
        checked: bool | None = None,
    ) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE runs SET status = ?, waiting_on = ?, error = COALESCE(?, error), "
                "checked = COALESCE(?, checked), updated_at = ? WHERE id = ?",
                (status, waiting_on, error, None if checked is None else int(checked), now, run_id),
            )
        )

    def approve(self, run_id: str, gate: str, who: str, *, now: float) -> None:
        self._write(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO approvals (run_id, gate, who, at) VALUES (?, ?, ?, ?)",
                (run_id, gate, who, now),
            )
        )

    # -- steps --------------------------------------------------------------------------------------

    def attempt_started(self, run_id: str, step_id: str, *, now: float) -> int:
        """Record a new attempt of a step (status running); returns its number (1, 2, ...)."""

        def start(db: sqlite3.Connection) -> int:
            n = db.execute("SELECT attempts FROM steps WHERE run_id = ? AND id = ?", (run_id, step_id)).fetchone()
            attempt = int(n[0]) + 1
            db.execute(
                "UPDATE steps SET status = 'running', attempts = ?, error = NULL, "
                "started_at = COALESCE(started_at, ?) WHERE run_id = ? AND id = ?",
                (attempt, now, run_id, step_id),
            )
            db.execute(
                "INSERT INTO attempts (run_id, step_id, attempt, status, started_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, step_id, attempt, "running", now),
            )
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))
            return attempt

        return self._write(start)

    def attempt_ended(self, run_id: str, step_id: str, attempt: int, *, now: float, error: str | None) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE attempts SET status = ?, error = ?, finished_at = ? "
                "WHERE run_id = ? AND step_id = ? AND attempt = ?",
                ("failed" if error else "succeeded", error, now, run_id, step_id, attempt),
            )
        )

    def outputs(self, run_id: str, step_id: str, outputs: Mapping[str, Any], *, now: float) -> None:
        """The action completed: its outputs are kept (verify may still fail the step)."""

        def keep(db: sqlite3.Connection) -> None:
            db.execute("UPDATE steps SET outputs = ? WHERE run_id = ? AND id = ?", (_json(outputs), run_id, step_id))
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))

        self._write(keep)

    def step_ended(self, run_id: str, step_id: str, status: str, *, now: float, error: str | None = None) -> None:
        def end(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE steps SET status = ?, error = ?, finished_at = ? WHERE run_id = ? AND id = ?",
                (status, error, now, run_id, step_id),
            )
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))

        self._write(end)

    def memo(self, run_id: str, step_id: str) -> dict[str, Any]:
        row = self._read(
            lambda db: db.execute("SELECT memo FROM steps WHERE run_id = ? AND id = ?", (run_id, step_id)).fetchone()
        )
        return json.loads(row[0]) if row else {}

    def remember(self, run_id: str, step_id: str, key: str, value: Any) -> None:
        def add(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT memo FROM steps WHERE run_id = ? AND id = ?", (run_id, step_id)).fetchone()
            memo = json.loads(row[0]) if row else {}
            memo[key] = value
            db.execute("UPDATE steps SET memo = ? WHERE run_id = ? AND id = ?", (_json(memo), run_id, step_id))

        self._write(add)

    def compensation(self, run_id: str, step_id: str, status: str, *, now: float, error: str | None = None) -> None:
        def mark(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE steps SET compensation = ?, compensation_error = ? WHERE run_id = ? AND id = ?",
                (status, error, run_id, step_id),
            )
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))

        self._write(mark)

    # -- reading ------------------------------------------------------------------------------------

    def _not_found(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run {run_id} in journal {self.path}")

    def _load(self, db: sqlite3.Connection, run_id: str) -> RunRecord:
        row = db.execute(
            "SELECT id, runbook, status, params, trigger_kind, trigger_who, trigger_why, idem_key, scope, "
            "dry_run, created_at, updated_at, waiting_on, error FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise self._not_found(run_id)
        steps = tuple(
            StepRecord(
                id=s[0],
                action=s[1],
                status=s[2],
                attempts=s[3],
                outputs=None if s[4] is None else json.loads(s[4]),
                error=s[5],
                started_at=s[6],
                finished_at=s[7],
                compensation=s[8],
                compensation_error=s[9],
            )
            for s in db.execute(
                "SELECT id, action, status, attempts, outputs, error, started_at, finished_at, compensation, "
                "compensation_error FROM steps WHERE run_id = ? ORDER BY idx",
                (run_id,),
            )
        )
        approvals = tuple(
            Approval(gate=a[0], who=a[1], at=a[2])
            for a in db.execute("SELECT gate, who, at FROM approvals WHERE run_id = ? ORDER BY at, rowid", (run_id,))
        )
        return RunRecord(
            id=row[0],
            runbook=row[1],
            status=row[2],
            params=json.loads(row[3]),
            trigger=Trigger(kind=row[4], who=row[5], why=row[6], key=row[7]),
            scope=row[8],
            dry_run=bool(row[9]),
            created_at=row[10],
            updated_at=row[11],
            waiting_on=row[12],
            error=row[13],
            steps=steps,
            approvals=approvals,
        )


class RunLock:
    """An exclusive lock on one run while a process executes it. The OS drops it if the process dies
    (even by SIGKILL), so a crashed run can be resumed at once, but a live one is never run twice."""

    def __init__(self, directory: Path, run_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_id}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(f"run {self.run_id} is being executed by another process (it holds {self.path})") from None
        self._fd = fd
        return self

    def discard(self) -> None:
        """Remove the lock file of a finished run while still holding it. Safe: a process that opened the
        old file can lock it, but finds the run finished and does nothing."""
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
