"""Many threads and processes on one journal: a journal conflict waits or retries, it never fails a run."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.aws import AwsSettings
from scaler.clock import SystemClock
from scaler.errors import TransientError
from scaler.runbook.journal import Journal, JournalBusy, JournalError
from scaler.runbook.records import RunRecord, Trigger
from scaler.runbook.service import RunbookService

STEPS = ("prepare", "pause", "finish")
WHO = Trigger(kind="manual", who="load", why="journal contention")


def write_runbook(folder: Path) -> Path:
    """Three zero-second waits: no provider is called, so every write the run makes is a journal write."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "name": "busy",
        "parameters": {"job": {"description": "Run label; each run has its own scope"}},
        "concurrency": "job:{{ params.job }}",
        "steps": [{"id": sid, "action": "wait", "inputs": {"seconds": 0}} for sid in STEPS],
    }
    (folder / "busy.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def service_on(state: Path, runbooks: Path) -> RunbookService:
    return RunbookService(runbooks_dir=runbooks, journal_path=state / "journal.db", audit_path=state / "audit.jsonl",
                          aws=AwsSettings(region="us-east-1"), clock=SystemClock())


def start_runs(state: str, runbooks: str, label: str, threads: int, runs: int) -> list[tuple[str, str, str]]:
    """`threads` threads, each starting `runs` runs one after another; (job, status, error) per run.

    A top-level function, so a spawned process can run it too.
    """
    svc = service_on(Path(state), Path(runbooks))

    def one_thread(t: int) -> list[tuple[str, str, str]]:
        done = []
        for i in range(runs):
            job = f"{label}-{t}-{i}"
            try:
                run = svc.start("busy", {"job": job}, trigger=WHO)
                done.append((job, run.status, run.error or ""))
            except Exception as e:  # an error out of start() is a failure too, counted like one
                done.append((job, "raised", f"{type(e).__name__}: {e}"))
        return done

    with ThreadPoolExecutor(threads) as pool:
        return [r for rs in pool.map(one_thread, range(threads)) for r in rs]


def assert_intact(run: RunRecord) -> None:
    """Every step succeeded at its first attempt, in runbook order, each one after the one before."""
    assert (run.status, run.error) == ("succeeded", None)
    assert [(s.id, s.status, s.attempts, s.error) for s in run.steps] == [
        (sid, "succeeded", 1, None) for sid in STEPS]
    times = [t for s in run.steps for t in (s.started_at, s.finished_at)]
    assert None not in times and times == sorted(times), times
    assert run.created_at <= times[0] and times[-1] <= run.updated_at


def test_threads_and_processes_share_one_journal_without_failing_a_run(tmp_path: Path) -> None:
    state, runbooks = tmp_path / "state", write_runbook(tmp_path / "runbooks")
    journal = Journal(state / "journal.db")
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that already runs threads
    with ProcessPoolExecutor(3, mp_context=spawn) as procs:
        # 3 processes x 4 threads x 8 runs, and this process's 4 threads x 25 runs, all at once.
        others = [procs.submit(start_runs, str(state), str(runbooks), f"p{p}", 4, 8) for p in range(3)]
        here = start_runs(str(state), str(runbooks), "local", 4, 25)
        results = here + [r for f in others for r in f.result(timeout=240)]

    assert len(results) == 4 * 25 + 3 * 4 * 8
    failed = [r for r in results if r[1] != "succeeded"]
    assert not failed, f"{len(failed)} of {len(results)} runs failed, e.g. {failed[:3]}"
    runs = journal.runs(limit=1000)
    assert len(runs) == len(results) and len({r.id for r in runs}) == len(results)
    assert sorted(r.params["job"] for r in runs) == sorted(job for job, _, _ in results)
    for run in runs:
        assert_intact(run)


def bump(path: str, step: str, times: int) -> list[int]:
    """Record `times` attempts of one step; the attempt numbers this caller was given."""
    journal = Journal(path)
    return [journal.attempt_started("shared", step, now=float(i)) for i in range(times)]


def test_concurrent_read_then_write_transactions_neither_fail_nor_lose_an_update(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    journal.create(run_id="shared", runbook="busy", definition={}, params={}, trigger=WHO, scope="shared",
                   status="running", dry_run=False, steps=[("s", "wait")], now=0.0)
    # attempt_started reads the count and writes count+1: 2 processes and 6 threads, 40 attempts each.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as procs, ThreadPoolExecutor(6) as threads:
        futures = [procs.submit(bump, str(path), "s", 40) for _ in range(2)]
        futures += [threads.submit(bump, str(path), "s", 40) for _ in range(6)]
        given = [n for f in futures for n in f.result(timeout=240)]

    # Each number handed out once, none skipped: no update was lost and none failed.
    assert sorted(given) == list(range(1, 8 * 40 + 1))
    assert journal.get("shared").steps[0].attempts == 8 * 40
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT attempt FROM attempts WHERE run_id = 'shared' ORDER BY attempt").fetchall()
    assert [r[0] for r in rows] == list(range(1, 8 * 40 + 1))


# -- the retry itself, without contention: a fake sleeper, a database that answers "locked" -----------------


class Flaky:
    """Stands in for sqlite3.connect: in the first `busy` connections, BEGIN fails as it does when another
    writer holds the lock past the busy timeout."""

    def __init__(self, busy: int, code: int = sqlite3.SQLITE_BUSY) -> None:
        self.busy, self.code, self.calls = busy, code, 0
        self.real = sqlite3.connect

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return Connection(self.real(*args, **kwargs), locked=self.calls <= self.busy, code=self.code)


class Connection:
    """A real connection whose BEGIN can be made to fail with a given SQLite error code."""

    def __init__(self, db: sqlite3.Connection, *, locked: bool, code: int) -> None:
        self.db, self.locked, self.code = db, locked, code

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.locked and sql.startswith("BEGIN"):
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = self.code
            error.sqlite_errorname = "SQLITE_BUSY"
            raise error
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def journal_with(tmp: Path, monkeypatch: pytest.MonkeyPatch, busy: int, code: int = sqlite3.SQLITE_BUSY
                 ) -> tuple[Journal, list[float], Flaky]:
    slept: list[float] = []
    journal = Journal(tmp / "journal.db", sleep=slept.append)
    journal.create(run_id="r", runbook="busy", definition={}, params={}, trigger=WHO, scope="r",
                   status="running", dry_run=False, steps=[("s", "wait")], now=0.0)
    flaky = Flaky(busy, code)
    monkeypatch.setattr("scaler.runbook.journal.sqlite3.connect", flaky)
    return journal, slept, flaky


@pytest.mark.parametrize("code", [sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, 517],  # 517: SQLITE_BUSY_SNAPSHOT
                         ids=["busy", "locked", "busy-snapshot"])
def test_a_transaction_meeting_a_lock_is_retried_with_growing_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    code: int) -> None:
    journal, slept, flaky = journal_with(tmp_path, monkeypatch, busy=3, code=code)
    assert journal.attempt_started("r", "s", now=1.0) == 1  # the 4th try got through
    assert flaky.calls == 4 and len(slept) == 3
    assert slept == sorted(slept) and slept[0] > 0  # backoff: each wait longer than the one before


def test_a_lock_that_outlasts_every_retry_is_a_transient_journal_error(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    journal, slept, flaky = journal_with(tmp_path, monkeypatch, busy=1000)
    with pytest.raises(JournalBusy) as raised:
        journal.step_ended("r", "s", "succeeded", now=1.0)
    assert isinstance(raised.value, TransientError) and raised.value.provider == "journal"
    assert flaky.calls == len(slept) + 1 <= 10  # bounded


def test_other_database_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, slept, flaky = journal_with(tmp_path, monkeypatch, busy=1, code=sqlite3.SQLITE_CANTOPEN)
    with pytest.raises(JournalError, match=f"^journal {tmp_path / 'journal.db'}: ") as caught:
        journal.get("r")
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError) and not caught.value.transient
    assert (flaky.calls, slept) == (1, [])


def test_a_write_begins_immediately(tmp_path: Path) -> None:
    """A writer takes the write lock at BEGIN, so a read-then-write never has to upgrade a stale snapshot."""
    journal = Journal(tmp_path / "journal.db")
    journal.create(run_id="r", runbook="busy", definition={}, params={}, trigger=WHO, scope="r",
                   status="running", dry_run=False, steps=[("s", "wait")], now=0.0)
    statements: list[str] = []
    real: Callable[..., sqlite3.Connection] = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("scaler.runbook.journal.sqlite3.connect", traced)
        journal.attempt_started("r", "s", now=1.0)
        journal.get("r")
    begins = [s for s in statements if s.upper().startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]
    assert Counter(s.split()[0].upper() for s in statements)["COMMIT"] == 2
