"""Small recordings that once asked for huge work: each is refused with one DataError naming the file, the place
and the limit, before the memory it would have needed is allocated.

The cases that used to allocate gigabytes run in a fresh interpreter limited to 1 GiB of address space
(RLIMIT_AS): there an allocation of the old size fails with MemoryError, so a pass proves the refusal comes
first, and a regression fails the test instead of paging the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scaler.errors import DataError
from scaler.recordings import promjson
from scaler.recordings.load import load_csv, load_prometheus_json, load_prometheus_range, load_recording
from tests.conftest import ROOT

T = 1_700_000_000
CENTURY = 100 * 365.25 * 86400


def limited(code: str, *, gib: float = 1.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that may use at most `gib` GiB of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30),) * 2)

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=limit, capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def refusal(path: Path, steps: str) -> str:
    """The DataError message of `steps` (which use `path`) run under the memory limit; no traceback allowed."""
    done = limited(f"""
        from scaler.errors import DataError
        from scaler.recordings.load import load_recording, resample
        path = {str(path)!r}
        try:
            {steps}
        except DataError as e:
            print(e)
        else:
            print("no error")
    """)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def test_two_rows_a_century_apart_are_refused_before_the_tick_grid_exists(tmp_path):
    """A replay runs to one sample step past the last sample, and with two samples the step is the century:
    at 15 s that is 421 M ticks, a 3 GB grid, then 13 GB and a MemoryError."""
    path = tmp_path / "century.csv"
    path.write_text(f"timestamp,cpu\n{T},50\n{T + CENTURY:.0f},60\n")
    message = refusal(path, "resample(load_recording(path), interval=15)")
    assert message.startswith(f"{path}: invalid data: resampled every 15 s, its 73,050.0 days (to one step past "
                              "the last sample) are 420,768,000 ticks x 1 target(s) = 420,768,000 cells, more than "
                              "the limit of 50,000,000")


def test_one_five_megabyte_cell_is_refused_before_any_cell_is_parsed(tmp_path):
    """numpy sized the whole column by its longest cell: 5 M characters x 4 bytes x 401 rows = 7.5 GB."""
    path = tmp_path / "cell.csv"
    rows = "".join(f"{T + 60 * i},50\n" for i in range(400))
    path.write_text(f"timestamp,cpu\n{rows}{T + 60 * 400},{'1' * 5_000_000}\n")
    message = refusal(path, "load_recording(path)")
    assert message.strip() == (f"{path}: invalid data: row 402, column 'cpu': a cell of 5,000,000 characters, "
                               "more than the limit of 256")


def test_many_short_rows_with_one_long_cell_cost_one_block_not_the_column(tmp_path):
    """200,000 rows and one 250-character target name (within the limit): converted a block at a time, not as
    one 200,000 x 250 x 4 byte (200 MB) array, so this loads in a quarter of a GiB of address space."""
    path = tmp_path / "named.csv"
    rows = "".join(f"{T + 15 * i},t{i % 2},50\n" for i in range(200_000))
    path.write_text(f"timestamp,target,cpu\n{rows}{T - 15},{'x' * 250},1\n")
    done = limited(f"""
        from scaler.recordings.load import load_recording
        rec = load_recording({str(path)!r})
        print(len(rec.targets), rec.times.size)
    """, gib=0.6)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3", "200001"]


def test_as_many_targets_as_timestamps_is_refused_before_the_arrays(tmp_path):
    """9,000 rows, each its own target at its own time: a 9,000 x 9,000 array per metric (650 MB each)."""
    path = tmp_path / "diagonal.csv"
    path.write_text("timestamp,target,cpu\n" + "".join(f"{T + i},t{i},1\n" for i in range(9000)))
    message = refusal(path, "load_recording(path)")
    assert message.strip() == (f"{path}: invalid data: 9,000 target(s) x 9,000 timestamps = 81,000,000 cells, "
                               "more than the limit of 50,000,000")


def test_json_nested_a_hundred_thousand_deep_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError) as err:
        load_prometheus_json(path, metric="cpu")
    assert str(err.value) == f"{path}: invalid data: nested 100,000 deep, more than the limit of 32"


def test_a_five_megabyte_json_value_is_refused_naming_the_pair(tmp_path):
    path = tmp_path / "cpu.json"
    values = [[T + 15 * i, "0.5"] for i in range(400)] + [[T + 6000, "1" * 5_000_000]]
    path.write_text(json.dumps([{"metric": {"pod": "a"}, "values": values}]))
    message = refusal(path, "load_recording(path)")
    assert message.strip() == (f'{path}: invalid data: result[0] {{pod="a"}}, values[400]: a value of 5,000,000 '
                               "characters, more than the limit of 256")


def test_json_with_more_arrays_than_samples_allowed_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(promjson, "MAX_JSON_ARRAYS", 100)
    monkeypatch.setattr(promjson.json, "loads", lambda *a, **k: pytest.fail("parsed a file it should refuse"))
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps([{"metric": {}, "values": [[T + i, "1"] for i in range(200)]}]))
    with pytest.raises(DataError, match="202 JSON arrays: more samples than the limit of 10,000,000"):
        load_prometheus_json(path)


@pytest.mark.parametrize(
    ("suffix", "limit", "unit"),
    [(".csv", 2**30, "1 GiB"), (".json", 64 * 2**20, "64 MiB")],
    ids=["csv-1-gib", "json-64-mib"],
)
def test_a_file_over_its_limit_is_refused_by_its_size_unread(tmp_path, suffix, limit, unit):
    """A CSV is read column by column (about 40 bytes a row), a JSON file is parsed whole (about 30 times its size)."""
    path = tmp_path / f"big{suffix}"
    with path.open("wb") as f:
        f.truncate(limit + 1)  # sparse: nothing is written, and nothing may be read
    with pytest.raises(DataError) as err:
        load_recording(path, metric="cpu")
    assert str(err.value) == (f"{path}: invalid data: {limit + 1:,} bytes, more than the limit of {limit:,} bytes "
                              f"({unit})")


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("timestamp,cpu\n1700000000,1\n1700000060,1e308\n", "row 3, column 'cpu'", "1e308 is above 1e+15"),
        ("timestamp,cpu,replicas\n1700000000,1,2e15\n1700000060,1,2\n", "row 2, column 'replicas'",
         "2e15 is above 1e+15"),
    ],
    ids=["cpu-1e308", "replicas-2e15"],
)
def test_a_recorded_value_above_any_metric_ceiling_is_refused_like_a_negative_one(tmp_path, text, where, what):
    path = tmp_path / "rec.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_csv(path)
    (problem,) = err.value.problems
    assert problem.where == where and problem.what.startswith(what)


def test_a_json_value_above_any_metric_ceiling_is_refused(tmp_path):
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps([{"metric": {}, "values": [[T, "1"], [T + 60, "1e308"]]}]))
    with pytest.raises(DataError) as err:
        load_prometheus_json(path)
    (problem,) = err.value.problems
    assert problem.where == "result[0] {}, values[1]" and problem.what.startswith("'1e308' is above 1e+15")


def test_a_csv_with_more_than_32_metric_columns_is_refused_at_its_header(tmp_path):
    path = tmp_path / "wide.csv"
    names = [f"m{i}" for i in range(33)]
    path.write_text("timestamp," + ",".join(names) + "\n" + f"{T}," + ",".join("1" for _ in names) + "\n")
    with pytest.raises(DataError) as err:
        load_csv(path)
    (problem,) = err.value.problems
    assert (problem.where, problem.what) == ("row 1", "33 metric and replicas columns, more than the limit of 32")


def test_a_directory_of_more_than_32_files_is_refused_before_reading_them(tmp_path):
    for i in range(33):
        (tmp_path / f"m{i}.csv").write_text("not read")
    with pytest.raises(DataError, match="33 .json and .csv files, more than the limit of 32"):
        load_recording(tmp_path)


def test_a_range_query_of_too_many_points_is_refused_before_any_request():
    # nothing listens on port 9: a request would be a connection error, not this
    with pytest.raises(DataError, match="more than a recording's limit of 50,000,000"):
        load_prometheus_range("http://127.0.0.1:9", {"cpu": "up"}, start=0, end=CENTURY, step=15)
    with pytest.raises(DataError, match="need step > 0"):
        load_prometheus_range("http://127.0.0.1:9", {"cpu": "up"}, start=0, end=float("inf"), step=15)
