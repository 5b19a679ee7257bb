"""The columnar readers: a CSV read with Arrow gives the same Recording (or the same error) as row by row, and
Parquet and Arrow files in long format read like the CSV they hold, every problem named by row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from scaler.errors import DataError
from scaler.recordings import columnar, model
from scaler.recordings.columnar import load_table, read_csv_columnar
from scaler.recordings.csvfile import read_rows
from scaler.recordings.csvload import read_csv
from scaler.recordings.load import load_recording
from tests.recordings.test_recorded import BAD, BAD_IDS, LONG

T = 1_700_000_000

# Files the columnar reader takes (it must give exactly what the row-by-row reader gives) ...
TAKEN = {
    "epoch-seconds": "timestamp,value\n1700000000,1\n1700000060,2\n",
    "epoch-fractional": "timestamp,value\n1700000000.5,1\n1700000060.5,2\n",
    "rfc3339-utc": "timestamp,value\n2023-11-14T22:13:20Z,1\n2023-11-14T22:14:20Z,2\n",
    "naive-space-is-utc": "timestamp,value\n2023-11-14 22:13:20,1\n2023-11-14 22:14:20.250,2\n",
    "bom-and-crlf": "\ufefftimestamp,value\r\n1700000000,1\r\n1700000060,2\r\n",
    "blank-lines-and-spaces": "\ntimestamp , value\n\n1700000000 , 1 \n\n1700000060,2\n\n",
    "quoted-header": '"timestamp","value"\n1700000000,1\n1700000060,2\n',
    "long-format": LONG,
    "gaps-and-nan-spellings": "timestamp,cpu,replicas\n1700000000,NaN,1\n1700000060,nan,\n1700000120,,2\n"
                              "1700000180,+Inf,3\n1700000240,1,\n",
    "quoted-names": 'timestamp,target,cpu\n1700000000,"a,b",1\n1700000060,"a,b",2\n1700000000,"c""d",3\n',
    "padded-names": "timestamp,target,cpu\n1700000000, web ,1\n1700000060,web,2\n1700000000,api ,3\n",
    "header-only-metric": "timestamp,cpu\n1700000000,1\n",
}
# ... and files it gives back (the row-by-row reader knows these spellings, or has a problem to name)
GIVEN_BACK = {
    "offsets": "timestamp,value\n2023-11-15T00:13:20+02:00,1\n2023-11-14T17:14:20-05:00,2\n",
    "lowercase-t-z": "timestamp,value\n2023-11-14t22:13:20z,1\n2023-11-14t22:14:20z,2\n",
    "mixed-spellings": "timestamp,value\n2023-11-14 22:13:20,1\n2023-11-14T22:14:20+00:00,2\n",
    "underscore-number": "timestamp,cpu\n1700000000,1_000\n1700000060,2\n",
    "nan-payload": "timestamp,cpu\n1700000000,nan(1)\n1700000060,1\n",
    "quote-mid-cell": 'timestamp,target,cpu\n1700000000,a"b,1\n1700000060,a"b,2\n',
    "line-break-in-quotes": 'timestamp,target,cpu\n1700000000,"a\nb",1\n1700000060,"a\nb",2\n',
    "comma-only-line": "timestamp,cpu\n1700000000,1\n,\n1700000060,2\n",
}


def write(tmp_path: Path, text: str, name: str = "rec.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def outcome(read, path: Path, **options) -> tuple:
    """What a reader made of `path`: the Recording's every field, or the error's text."""
    try:
        got = read(path, value_name=options.get("metric"), target=options.get("target"))
    except DataError as e:
        return ("error", str(e))
    if got is None:
        return ("given back",)
    rec, had_value = got
    arrays = {name: arr.tolist() for name, arr in rec.metrics.items()}
    replicas = None if rec.replicas is None else rec.replicas.tolist()
    return ("recording", rec.targets, rec.times.tolist(), repr(arrays), repr(replicas), rec.step, had_value)


def columnar_first(path: Path, **options):
    """read_csv as it dispatches, with the size floor off so that small files go to the columnar reader too."""
    fast = read_csv_columnar(path, min_bytes=0, **options)
    return fast if fast is not None else read_rows(path, **options)


@pytest.mark.parametrize("name", TAKEN)
def test_what_the_columnar_reader_takes_it_reads_as_the_row_reader_does(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, TAKEN[name])
    options = {"metric": "cpu"} if "value" in TAKEN[name][:40] else {}
    fast = outcome(lambda p, **o: read_csv_columnar(p, min_bytes=0, **o), path, **options)
    assert fast[0] != "given back"
    assert fast == outcome(read_rows, path, **options)


@pytest.mark.parametrize("name", GIVEN_BACK)
def test_what_it_does_not_read_alike_it_gives_back(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, GIVEN_BACK[name])
    assert read_csv_columnar(path, value_name="cpu", target=None, min_bytes=0) is None
    assert outcome(columnar_first, path, metric="cpu") == outcome(read_rows, path, metric="cpu")


@pytest.mark.parametrize(("text", "options", "where", "what"), BAD, ids=BAD_IDS)
def test_every_bad_input_gets_the_row_readers_message(tmp_path: Path, text, options, where, what) -> None:
    path = write(tmp_path, text)
    got = outcome(columnar_first, path, **options)
    assert got[0] == "error" and got == outcome(read_rows, path, **options)


def test_a_target_option_keeps_one_target(tmp_path: Path) -> None:
    path = write(tmp_path, LONG)
    for target in ("web", "cache"):
        assert outcome(columnar_first, path, target=target) == outcome(read_rows, path, target=target)


def fleet_table(targets: int = 40, ticks: int = 3000, *, gap: bool = True) -> pa.Table:
    """Long format in time order: timestamp, target, cpu, replicas (a gap in one target's cpu)."""
    rng = np.random.default_rng(5)
    cpu = rng.uniform(0, 100, (ticks, targets)).round(3)
    if gap:
        cpu[100:140, 3] = np.nan
    return pa.table({
        "timestamp": np.repeat(T + 15 * np.arange(ticks), targets),
        "target": np.tile(np.array([f"svc-{j:02d}" for j in range(targets)]), ticks),
        "cpu": pa.array(cpu.ravel(), mask=np.isnan(cpu.ravel())),
        "replicas": np.tile(np.arange(targets) % 5 + 1, ticks).astype(np.int64),
    })


def test_a_large_file_reads_the_same_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    pcsv.write_csv(fleet_table(), path)  # quoted header and names, as Arrow writes them; blank cells in the gap
    assert path.stat().st_size > columnar.COLUMNAR_MIN_BYTES  # so read_csv takes the columnar reader itself
    fast = outcome(read_csv, path)
    assert fast[0] == "recording" and fast == outcome(read_rows, path)


def test_a_csv_past_the_old_64_mib_limit_loads_column_by_column(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.write(b"timestamp,target,cpu\n")
        pcsv.write_csv(fleet_table(targets=100, ticks=28_000, gap=False).select(["timestamp", "target", "cpu"]), f,
                       pcsv.WriteOptions(include_header=False, quoting_style="none"))
    assert path.stat().st_size > 64 * 2**20
    monkeypatch.setattr("scaler.recordings.csvload.read_rows", lambda *a, **k: pytest.fail("read row by row"))
    rec = load_recording(path)
    assert rec.metrics["cpu"].shape == (100, 28_000) and rec.step == 15


def test_progress_is_told_in_bytes(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    pcsv.write_csv(fleet_table(), path)
    told: list[tuple[float, float]] = []
    load_recording(path, progress=lambda done, total: told.append((done, total)))
    assert told and told[-1][1] == path.stat().st_size and told[-1][0] <= told[-1][1]


# ---- Parquet and Arrow IPC


@pytest.mark.parametrize("kind", ["parquet", "arrow-file", "arrow-stream", "feather"])
def test_parquet_and_arrow_files_read_like_the_csv_they_hold(tmp_path: Path, kind: str) -> None:
    table = fleet_table()
    csv_path = tmp_path / "fleet.csv"
    pcsv.write_csv(table, csv_path)
    path = tmp_path / {"parquet": "f.parquet", "arrow-file": "f.arrow", "arrow-stream": "f.arrows",
                       "feather": "f.feather"}[kind]
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=10_000)
    elif kind == "feather":
        feather.write_feather(table, path)
    else:
        opener = pa.ipc.new_file if kind == "arrow-file" else pa.ipc.new_stream
        with pa.OSFile(str(path), "wb") as sink, opener(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=25_000):
                writer.write_batch(batch)
    want = outcome(read_rows, csv_path)
    rec = load_recording(path)
    got = ("recording", rec.targets, rec.times.tolist(), repr({n: a.tolist() for n, a in rec.metrics.items()}),
           repr(None if rec.replicas is None else rec.replicas.tolist()), rec.step, False)
    assert got == want


@pytest.mark.parametrize(
    "column",
    [pa.array(T + 60 * np.arange(4), pa.int64()), pa.array((T + 60 * np.arange(4)).astype(float)),
     pa.array((T + 60 * np.arange(4)) * 1000, pa.timestamp("ms", tz="UTC")),
     pa.array((T + 60 * np.arange(4)) * 10**9, pa.timestamp("ns")),
     pa.array(["2023-11-14T22:13:20Z", "2023-11-14T22:14:20Z", "2023-11-14 22:15:20", "2023-11-14T22:16:20Z"])],
    ids=["int-seconds", "float-seconds", "timestamp-ms-utc", "timestamp-ns", "rfc3339-text"],
)
def test_a_table_timestamp_may_be_seconds_an_arrow_timestamp_or_text(tmp_path: Path, column: pa.Array) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"timestamp": column, "cpu": [1.0, 2.0, 3.0, 4.0]}), path)
    rec = load_table(path)
    np.testing.assert_array_equal(rec.times, T + 60 * np.arange(4))
    np.testing.assert_array_equal(rec.metrics["cpu"], [[1, 2, 3, 4]])


def test_every_problem_in_a_table_is_named_by_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({
        "timestamp": pa.array([T, None, T + 120, T, T + 240, 1_700_000_300_000], pa.int64()),
        "target": ["web", "web", "", "web", "web", "web"],
        "cpu": pa.array([1.0, 2.0, 3.0, 4.0, -5.0, 6.0]),
    }), path)
    with pytest.raises(DataError) as err:
        load_table(path)
    assert [(p.where, p.what) for p in err.value.problems] == [
        ("row 2, column 'timestamp'", "missing timestamp"),
        ("row 6, column 'timestamp'", "1700000300000 looks like milliseconds since the epoch; write seconds "
                                      "(divide by 1000)"),
        ("row 5, column 'cpu'", "negative value -5"),
        ("row 3, column 'target'", "empty target name"),
        ("row 4, column 'timestamp'", "duplicate of row 1 for target 'web'"),
    ]


def test_a_table_without_a_timestamp_column_says_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"time": [T, T + 60], "cpu": [1.0, 2.0]}), path)
    with pytest.raises(DataError) as err:
        load_table(path)
    (problem,) = err.value.problems
    assert problem.where == "schema" and "no 'timestamp' column (columns: 'time', 'cpu')" in problem.what


def test_a_table_with_more_rows_than_cells_allowed_is_refused_unread(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(fleet_table(targets=4, ticks=10), path)
    monkeypatch.setattr(columnar, "MAX_CELLS", 39)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("read a row"))
    with pytest.raises(DataError, match="40 rows, more than the limit of 39 \\(target, time\\) cells"):
        load_table(path)


def test_a_table_value_column_needs_a_metric_name_and_the_target_option_keeps_one(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"timestamp": [T, T + 60, T, T + 60], "target": ["a", "a", "b", "b"],
                             "value": [1.0, 2.0, 3.0, 4.0]}), path)
    with pytest.raises(DataError, match="pass metric=NAME"):
        load_table(path)
    rec = load_recording(path, metric="rps", target="b")
    assert rec.targets == ("b",) and list(rec.metrics) == ["rps"]
    np.testing.assert_array_equal(rec.metrics["rps"], [[3.0, 4.0]])


def test_the_cell_limit_is_fifty_million() -> None:
    # 1,000 targets x 1 week at 15 s (40,320 ticks) fits; a replay writes its timeline a block at a time
    assert 1000 * 40_320 <= model.MAX_CELLS == 50_000_000
