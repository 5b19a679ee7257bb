"""SqliteStore: values by key that replace atomically, survive reopening, and serve many threads."""

import os
import sqlite3
import stat
import threading

import pytest

from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError
from scaler.store.sqlite import SqliteStore, _error


def test_save_load_and_replace(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    assert store.load("web") is None

    store.save("web", b"\x00first")
    store.save("worker", b"other")
    store.save("web", b"second, longer than the first")

    assert store.load("web") == b"second, longer than the first"
    assert store.load("worker") == b"other"
    store.save("web", b"")
    assert store.load("web") == b""  # empty is a value, not "never saved"


def test_survives_reopening_and_creates_its_directories(tmp_path):
    path = tmp_path / "a" / "b" / "state.db"
    SqliteStore(path).save("web", bytes(range(256)) * 4000)  # 1 MB

    again = SqliteStore(path)

    assert again.load("web") == bytes(range(256)) * 4000
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_updated_comes_from_the_injected_clock(tmp_path):
    clock = FakeClock(1_700_000_000.0)
    store = SqliteStore(tmp_path / "state.db", clock=clock)
    store.save("web", b"x")
    clock.advance(15)
    store.save("web", b"y")
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT updated FROM state WHERE key = 'web'").fetchone()[0] == 1_700_000_015.0


def test_many_threads_each_see_whole_values(tmp_path):
    """8 writers replace one shared key with values of different lengths while 4 readers load it: every
    read is one of the written values in full, never a mix; each writer's own key ends with its last value."""
    store = SqliteStore(tmp_path / "state.db")
    values = {bytes([i]) * (1000 * (i + 1)) for i in range(8)}
    store.save("shared", bytes([0]) * 1000)
    seen, errors = [], []
    stop = threading.Event()

    def write(i: int) -> None:
        try:
            for k in range(10):
                store.save("shared", bytes([i]) * (1000 * (i + 1)))
                store.save(f"own-{i}", str(k).encode())
        except Exception as e:  # collected and asserted below: a thread's exception is otherwise lost
            errors.append(e)

    def read() -> None:
        try:
            while not stop.is_set():
                seen.append(store.load("shared"))
        except Exception as e:
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(4)]
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()

    assert errors == []
    assert seen and set(seen) <= values
    assert [store.load(f"own-{i}") for i in range(8)] == [b"9"] * 8


def test_a_file_that_is_not_a_database_is_a_permanent_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an sqlite file, " * 100)
    with pytest.raises(PermanentError) as e:
        SqliteStore(path)
    assert e.value.code == "SQLITE_NOTADB" and e.value.provider == "sqlite"


def test_a_writer_holding_the_lock_is_a_transient_error(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process mid-write
    try:
        with pytest.raises(TransientError) as e:
            store.save("web", b"x")
        assert e.value.code == "SQLITE_BUSY"
        assert store.load("web") is None  # readers are not blocked by the writer in WAL mode
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.save("web", b"x")  # the lock is gone: worth the retry
    assert store.load("web") == b"x"


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (sqlite3.SQLITE_BUSY, True),
        (sqlite3.SQLITE_LOCKED, True),
        (sqlite3.SQLITE_BUSY | 256, True),  # SQLITE_BUSY_RECOVERY: an extended code of BUSY
        (sqlite3.SQLITE_FULL, False),
        (sqlite3.SQLITE_NOTADB, False),
        (sqlite3.SQLITE_IOERR, False),
        (sqlite3.SQLITE_READONLY, False),
        (None, False),  # an OSError (e.g. the directory cannot be made) has no result code
    ],
    ids=["busy", "locked", "busy-recovery", "disk-full", "not-a-database", "io-error", "read-only", "os-error"],
)
def test_errors_are_classified_by_result_code(tmp_path, code, transient):
    if code is None:
        error = OSError("No space left on device")
    else:
        error = sqlite3.OperationalError("text is never read")
        error.sqlite_errorcode = code
    assert isinstance(_error(error, tmp_path, "save"), TransientError if transient else PermanentError)


@pytest.fixture
def umask_022():
    """The usual umask, under which a file created without a mode is readable by everyone (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_file_and_its_wal_and_shm_are_for_the_owner_only(tmp_path, umask_022):
    path = tmp_path / "state" / "state.db"
    store = SqliteStore(path)
    reader = sqlite3.connect(path)  # held open, so the WAL and shared-memory files stay while we look
    try:
        reader.execute("SELECT count(*) FROM state").fetchone()
        store.save("web", b"x")
        files = [path, path.with_name("state.db-wal"), path.with_name("state.db-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    finally:
        reader.close()


def test_an_existing_file_keeps_the_mode_it_was_given(tmp_path, umask_022):
    path = tmp_path / "state.db"
    SqliteStore(path).save("web", b"x")
    path.chmod(0o640)  # an operator's choice (a group that backs it up) is not undone at the next start
    SqliteStore(path).save("web", b"y")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
