"""Recorded metrics from CSV: each accepted format, each rejected input, resampling with gaps, real traces."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from scaler.errors import DataError
from scaler.recordings.load import Recording, load_csv, load_recording, resample
from tests.conftest import SHARED_TRACES

TRACES = SHARED_TRACES
T = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def write(tmp_path: Path, text: str, name: str = "rec.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


# ---- accepted formats


@pytest.mark.parametrize(
    ("text", "times"),
    [
        ("timestamp,value\n1700000000,1\n1700000060,2\n", [T, T + 60]),
        ("timestamp,value\n1700000000.5,1\n1700000060.5,2\n", [T + 0.5, T + 60.5]),
        ("timestamp,value\n2023-11-14T22:13:20Z,1\n2023-11-14T22:14:20Z,2\n", [T, T + 60]),
        ("timestamp,value\n2023-11-15T00:13:20+02:00,1\n2023-11-14T17:14:20-05:00,2\n", [T, T + 60]),
        ("timestamp,value\n2023-11-14T22:13:20.250Z,1\n2023-11-14t22:14:20.5z,2\n", [T + 0.25, T + 60.5]),
        ("timestamp,value\n2023-11-14 22:13:20,1\n2023-11-14 22:14:20,2\n", [T, T + 60]),
        ("timestamp,value\n2023-11-14 22:13:20,1\n2023-11-14T22:14:20+00:00,2\n", [T, T + 60]),
        ('"timestamp","value"\n"1700000000","1"\n"1700000060","2"\n', [T, T + 60]),
        ("\ufefftimestamp,value\r\n1700000000,1\r\n1700000060,2\r\n", [T, T + 60]),
        ("\ntimestamp , value\n\n1700000000 , 1 \n\n1700000060,2\n\n", [T, T + 60]),
    ],
    ids=[
        "epoch-seconds",
        "epoch-fractional",
        "rfc3339-utc",
        "rfc3339-offsets",
        "rfc3339-fractions-lowercase",
        "naive-space-is-utc",
        "mixed-spellings",
        "quoted-cells",
        "bom-and-crlf",
        "blank-lines-and-spaces",
    ],
)
def test_two_column_files_in_every_timestamp_spelling(tmp_path: Path, text: str, times: list[float]) -> None:
    rec = load_csv(write(tmp_path, text), metric="cpu")
    np.testing.assert_array_equal(rec.times, times)
    assert rec.targets == ("default",)
    np.testing.assert_array_equal(rec.metrics["cpu"], [[1.0, 2.0]])
    assert rec.replicas is None


def test_the_value_column_takes_the_name_given_by_the_metric_option(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,value\n1700000000,1\n1700000060,2\n")
    assert list(load_csv(path, metric="rps").metrics) == ["rps"]
    with pytest.raises(DataError) as err:
        load_csv(path)
    (problem,) = err.value.problems
    assert problem.where == "row 1, column 2"
    assert "metric=NAME" in problem.what and "--metric" in problem.what


def test_a_wide_file_has_one_metric_per_column_and_replicas(tmp_path: Path) -> None:
    rec = load_csv(
        write(
            tmp_path,
            "timestamp,cpu,rps,replicas\n1700000000,50,100,3\n1700000060,70,,4\n1700000120,nan,90,\n",
        )
    )
    assert list(rec.metrics) == ["cpu", "rps"]
    np.testing.assert_array_equal(rec.metrics["cpu"], [[50, 70, np.nan]])
    np.testing.assert_array_equal(rec.metrics["rps"], [[100, np.nan, 90]])
    assert rec.replicas is not None
    np.testing.assert_array_equal(rec.replicas, [[3, 4, np.nan]])
    assert rec.step == 60


def test_the_metric_option_keeps_one_column_of_a_wide_file(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,cpu,rps\n1700000000,50,100\n1700000060,70,80\n")
    assert list(load_csv(path, metric="rps").metrics) == ["rps"]
    with pytest.raises(DataError, match="no metric 'mem'"):
        load_csv(path, metric="mem")


LONG = """timestamp,target,cpu,replicas
1700000060,api,20,2
1700000000,web,50,3
1700000000,api,10,2
1700000120,web,70,4
1700000060,web,,3
1700000120,db,5,1
"""


def test_long_format_gives_one_row_per_target_sorted_by_time(tmp_path: Path) -> None:
    rec = load_csv(write(tmp_path, LONG))
    assert rec.targets == ("api", "web", "db")  # order of first appearance
    np.testing.assert_array_equal(rec.times, [T, T + 60, T + 120])  # rows came unsorted
    np.testing.assert_array_equal(
        rec.metrics["cpu"],
        [
            [10, 20, np.nan],  # api sent nothing at +120
            [50, np.nan, 70],  # web's +60 cell is empty: no data, not zero
            [np.nan, np.nan, 5],  # db starts late
        ],
    )
    assert rec.replicas is not None
    np.testing.assert_array_equal(rec.replicas[1], [3, 3, 4])


def test_the_target_option_keeps_one_target_or_names_the_only_one(tmp_path: Path) -> None:
    web = load_csv(write(tmp_path, LONG), target="web")
    assert web.targets == ("web",)
    np.testing.assert_array_equal(web.metrics["cpu"], [[50, np.nan, 70]])
    with pytest.raises(DataError, match="no rows for target 'cache'"):
        load_csv(write(tmp_path, LONG), target="cache")
    single = load_csv(write(tmp_path, "timestamp,cpu\n1700000000,1\n1700000060,2\n", "one.csv"), target="web")
    assert single.targets == ("web",)


def test_nan_spellings_and_positive_infinity_are_no_data(tmp_path: Path) -> None:
    text = "timestamp,cpu\n1700000000,NaN\n1700000060,nan\n1700000120,\n1700000180,+Inf\n1700000240,1\n"
    rec = load_csv(write(tmp_path, text))
    np.testing.assert_array_equal(rec.metrics["cpu"], [[np.nan] * 4 + [1.0]])


def test_two_targets_offset_in_time_keep_their_own_step(tmp_path: Path) -> None:
    # web at :00, :15, :30...; api at :07, :22, ...: the union axis has 7-8 s spacing, each series 15 s
    rows = [f"{T + 15 * k},web,1" for k in range(20)] + [f"{T + 7 + 15 * k},api,2" for k in range(20)]
    rec = load_csv(write(tmp_path, "timestamp,target,cpu\n" + "\n".join(rows)))
    assert rec.times.size == 40
    assert rec.step == 15


def test_recorded_arrays_are_read_only(tmp_path: Path) -> None:
    rec = load_csv(write(tmp_path, LONG))
    assert not rec.times.flags.writeable
    assert not rec.metrics["cpu"].flags.writeable
    with pytest.raises(ValueError):
        rec.metrics["cpu"][0, 0] = 0.0


# ---- rejected inputs: one DataError naming the file, the row and the column

BAD = [
    ("timestamp,cpu\n1700000000,1\n1700000060,abc\n", {}, "row 3, column 'cpu'", "not a number: 'abc'"),
    (
        "timestamp,cpu\n1700000000,1\nyesterday,2\n",
        {},
        "row 3, column 'timestamp'",
        "cannot read 'yesterday'",
    ),
    (
        "timestamp,cpu\n2014-13-01 00:00:00,1\n2014-12-01 00:00:00,2\n",
        {},
        "row 2, column 'timestamp'",
        "not a valid date",
    ),
    (
        "timestamp,cpu\n2024-01-01T00:00:00,1\n2024-01-01T00:01:00Z,2\n",
        {},
        "row 2, column 'timestamp'",
        "has no time zone",
    ),
    ("timestamp,cpu\n,1\n1700000060,2\n", {}, "row 2, column 'timestamp'", "missing timestamp"),
    ("timestamp,cpu\n1700000000,1\n1700000060000,2\n", {}, "row 3, column 'timestamp'", "milliseconds"),
    ("timestamp,cpu\n1700000000,1\ninf,2\n", {}, "row 3, column 'timestamp'", "not a finite number"),
    (
        "timestamp,cpu\n1700000000,1\n1700000060,2\n1700000000,3\n",
        {},
        "row 4, column 'timestamp'",
        "duplicate of row 2",
    ),
    (
        "timestamp,target,cpu\n1700000000,web,1\n1700000000,api,1\n1700000000,web,2\n",
        {},
        "row 4, column 'timestamp'",
        "duplicate of row 2 for target 'web'",
    ),
    ("timestamp,cpu\n1700000000,1\n1700000060,-1\n", {}, "row 3, column 'cpu'", "negative value -1"),
    ("timestamp,cpu\n1700000000,1\n1700000060,-inf\n", {}, "row 3, column 'cpu'", "negative value -inf"),
    (
        "timestamp,cpu,replicas\n1700000000,1,-2\n1700000060,1,2\n",
        {},
        "row 2, column 'replicas'",
        "negative value -2",
    ),
    (
        "timestamp,target,cpu\n1700000000,web,1\n1700000000, ,1\n",
        {},
        "row 3, column 'target'",
        "empty target name",
    ),
    ("timestamp,cpu\n1700000000,1,2\n1700000060,2\n", {}, "row 2", "3 cells, but the header names 2"),
    ("1700000000,1\n1700000060,2\n", {}, "row 1", "no header"),
    ("time,cpu\n1700000000,1\n", {}, "row 1", "no 'timestamp' column (columns: 'time', 'cpu')"),
    ("timestamp,cpu,cpu\n1700000000,1,1\n", {}, "row 1, column 3", "repeats column 2"),
    ("timestamp,,cpu\n1700000000,1,1\n", {}, "row 1, column 2", "empty column name"),
    ("timestamp,target\n1700000000,web\n", {}, "row 1", "no metric columns"),
    ("timestamp,value,cpu\n1700000000,1,1\n", {"metric": "cpu"}, "row 1, column 2", "cannot be named 'cpu'"),
    ("", {}, "", "the file is empty"),
    ("  \n\n", {}, "", "the file is empty"),
    ("timestamp,cpu\n", {}, "", "no data rows"),
    ("timestamp,cpu\n1700000000,1\n", {}, "", "fewer than two distinct timestamps"),
    ('timestamp,cpu\n1700000000,"1\n', {}, "row 2", "not valid CSV: unexpected end of data"),
]
BAD_IDS = [
    "non-numeric-cell",
    "unreadable-timestamp",
    "impossible-date",
    "iso-without-zone",
    "missing-timestamp",
    "millisecond-epoch",
    "infinite-timestamp",
    "duplicate-timestamp",
    "duplicate-target-and-timestamp",
    "negative-value",
    "negative-infinity",
    "negative-replicas",
    "empty-target",
    "wrong-cell-count",
    "missing-header",
    "no-timestamp-column",
    "repeated-column",
    "empty-column-name",
    "no-metric-column",
    "value-name-clash",
    "empty-file",
    "blank-file",
    "header-only",
    "single-timestamp",
    "unterminated-quote",
]


@pytest.mark.parametrize(("text", "options", "where", "what"), BAD, ids=BAD_IDS)
def test_bad_input_is_one_data_error_naming_file_row_and_column(
    tmp_path: Path, text: str, options: dict[str, str], where: str, what: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(path, **options)
    assert err.value.source == str(path)
    assert str(path) in str(err.value)
    (problem,) = err.value.problems
    if where:
        assert problem.where == where
    assert what in str(problem)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "timestamp,cpu,rps\n1700000000,1,x\nsoon,2,3\n1700000120,-4,5\n1700000000,6,7\n"
    with pytest.raises(DataError) as err:
        load_csv(write(tmp_path, text))
    # column by column (timestamps first, then the metrics), then duplicate rows
    assert [p.where for p in err.value.problems] == [
        "row 3, column 'timestamp'",
        "row 4, column 'cpu'",
        "row 2, column 'rps'",
        "row 5, column 'timestamp'",
    ]


def test_a_long_problem_list_stops_at_twenty_and_says_how_many_more(tmp_path: Path) -> None:
    rows = "\n".join(f"{T + 60 * k},bad" for k in range(30))
    with pytest.raises(DataError) as err:
        load_csv(write(tmp_path, "timestamp,cpu\n" + rows))
    problems = err.value.problems
    assert len(problems) == 21
    assert problems[19].where == "row 21, column 'cpu'"
    assert str(problems[20]) == "and 10 more"


def test_twenty_thousand_rows_in_long_format_load(tmp_path: Path) -> None:
    stamps = [datetime.fromtimestamp(T + 15 * k, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(5000)]
    rows = [f"{s},{target},{k % 90},{k % 7}" for k, s in enumerate(stamps) for target in ("a", "b", "c", "d")]
    path = write(tmp_path, "timestamp,target,cpu,replicas\n" + "\n".join(rows) + "\n")
    rec = load_csv(path)
    assert rec.metrics["cpu"].shape == (4, 5000)
    assert rec.metrics["cpu"][2, 4999] == 4999 % 90


# ---- resampling: samples held for at most `hold`, gaps stay NaN


def _recording(tmp_path: Path, text: str) -> Recording:
    return load_csv(write(tmp_path, text))


# 5-min samples from +0 to +1200; the one due at +600 never arrived
GAPPY = f"timestamp,cpu\n{T},10\n{T + 300},20\n{T + 900},40\n{T + 1200},50\n"


def test_each_sample_is_held_until_the_next_and_a_gap_is_nan(tmp_path: Path) -> None:
    rec = _recording(tmp_path, GAPPY)
    assert rec.step == 300  # median of 300, 600, 300
    grid, series, replicas = resample(rec, interval=60)
    np.testing.assert_array_equal(grid, T + 60 * np.arange(25))  # up to the last sample + one step
    assert replicas is None
    np.testing.assert_array_equal(
        series["cpu"][0],
        [10] * 5  # +0 .. +240: the first sample
        + [20] * 5  # +300 .. +540: the second
        + [np.nan] * 5  # +600 .. +840: missing data, never zero and never the stale 20
        + [40] * 5  # +900 .. +1140
        + [50] * 5,  # +1200 .. +1440: the last sample, held for one step
    )


def test_a_longer_hold_bridges_a_gap(tmp_path: Path) -> None:
    _, series, _ = resample(_recording(tmp_path, GAPPY), interval=60, hold=600)
    np.testing.assert_array_equal(series["cpu"][0, 10:15], [20] * 5)


def test_at_the_sample_step_one_missing_sample_is_one_nan(tmp_path: Path) -> None:
    # a sample covers [t, t + hold): the grid point where the missing sample belonged is not the old one's
    grid, series, _ = resample(_recording(tmp_path, GAPPY), interval=300)
    np.testing.assert_array_equal(grid, T + 300 * np.arange(5))
    np.testing.assert_array_equal(series["cpu"][0], [10, 20, np.nan, 40, 50])


def test_before_the_first_and_after_the_last_sample_is_nan(tmp_path: Path) -> None:
    rec = _recording(tmp_path, f"timestamp,cpu\n{T},10\n{T + 300},20\n")
    grid, series, _ = resample(rec, interval=150, start=T - 300, end=T + 900)
    np.testing.assert_array_equal(grid, T + 150 * np.arange(-2, 6))
    np.testing.assert_array_equal(series["cpu"][0], [np.nan, np.nan, 10, 10, 20, 20, np.nan, np.nan])


def test_every_target_metric_and_replicas_resample_together(tmp_path: Path) -> None:
    grid, series, replicas = resample(_recording(tmp_path, LONG), interval=30)
    np.testing.assert_array_equal(grid, T + 30 * np.arange(6))
    np.testing.assert_array_equal(
        series["cpu"],
        [
            [10, 10, 20, 20, np.nan, np.nan],
            [50, 50, np.nan, np.nan, 70, 70],
            [np.nan, np.nan, np.nan, np.nan, 5, 5],
        ],
    )
    assert replicas is not None
    np.testing.assert_array_equal(replicas[1], [3, 3, 3, 3, 4, 4])
    assert series["cpu"].flags.writeable  # the caller's own copy


def test_offset_targets_each_hold_their_own_samples(tmp_path: Path) -> None:
    rows = [f"{T + 15 * k},web,{k}" for k in range(4)] + [f"{T + 7 + 15 * k},api,{100 + k}" for k in range(4)]
    rec = _recording(tmp_path, "timestamp,target,cpu\n" + "\n".join(rows))
    grid, series, _ = resample(rec, interval=5)
    np.testing.assert_array_equal(grid, T + 5 * np.arange(14))  # to the last time (+52) + 15, exclusive
    web, api = series["cpu"]
    np.testing.assert_array_equal(web, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, np.nan, np.nan])
    np.testing.assert_array_equal(
        api, [np.nan, np.nan, 100, 100, 100, 101, 101, 101, 102, 102, 102, 103, 103, 103]
    )


@pytest.mark.parametrize(
    "options",
    [{"interval": 0}, {"interval": -15}, {"interval": 15, "hold": 0}],
    ids=["zero", "negative", "no-hold"],
)
def test_resample_rejects_non_positive_durations(tmp_path: Path, options: dict[str, float]) -> None:
    rec = _recording(tmp_path, f"timestamp,cpu\n{T},10\n{T + 300},20\n")
    with pytest.raises(ValueError, match="positive"):
        resample(rec, **options)


# ---- the real recorded traces

TRACE_FILES = sorted(TRACES.glob("*.csv"))
# One NAB series repeats a timestamp (2014-03-09 03:00:00, twelve rows): it is refused, naming the rows.
REFUSED = {"ec2_network_in_5abac7"}
READABLE = [p for p in TRACE_FILES if p.stem not in REFUSED]
STEP = {"nyc_taxi": 1800, "nasa_http_rps": 15, "twitter_stream_rps": 15}  # the rest: 5 minutes


def test_the_traces_are_there() -> None:
    assert len(TRACE_FILES) == 19, f"expected the nineteen recorded traces in {TRACES}"


def _first_time(cell: str) -> float:
    if cell.isdigit():
        return float(cell)
    return datetime.strptime(cell, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("path", READABLE, ids=[p.stem for p in READABLE])
def test_each_recorded_trace_loads_and_its_gaps_stay_gaps(path: Path) -> None:
    lines = path.read_text().splitlines()
    rec = load_recording(path, metric="load" if "value" in lines[0] else None)
    (name,) = rec.metrics  # NAB files name their column `value` (read here as "load"); the 15 s ones `rps`
    assert rec.targets == ("default",)
    assert rec.times.size == len(lines) - 1
    assert np.all(np.diff(rec.times) > 0)
    assert rec.times[0] == _first_time(lines[1].split(",")[0])
    values = rec.metrics[name][0]
    assert np.all(np.isfinite(values)) and values.min() >= 0
    assert values[0] == float(lines[1].split(",")[1])
    assert rec.step == STEP.get(path.stem, 300)

    # replayed every 15 s, each missing sample leaves (spacing - step) / 15 grid points with no data
    grid, series, _ = resample(rec, interval=15)
    gaps = np.diff(rec.times) - rec.step
    missing = int(np.sum(gaps[gaps > 0]) / 15)
    assert grid.size == (rec.times[-1] + rec.step - rec.times[0]) / 15
    assert int(np.isnan(series[name]).sum()) == missing


def test_a_trace_with_a_repeated_timestamp_is_refused_naming_the_rows() -> None:
    with pytest.raises(DataError, match=r"row 2120, column 'timestamp': duplicate of row 2119"):
        load_recording(TRACES / "ec2_network_in_5abac7.csv", metric="load")


def test_some_traces_really_have_gaps() -> None:
    # the gap check above must not pass only because no trace has a gap
    gaps = {name: int(np.sum(np.diff(load_recording(TRACES / f"{name}.csv", metric="x").times) > 300))
            for name in ("elb_request_count_8c0756", "ec2_cpu_utilization_825cc2")}
    assert gaps["elb_request_count_8c0756"] == 8 and gaps["ec2_cpu_utilization_825cc2"] == 2


# ---- load_recording picks the reader


def test_load_recording_reads_csv_json_and_sniffs_other_suffixes(tmp_path: Path) -> None:
    csv_text = "timestamp,value\n1700000000,1\n1700000060,2\n"
    json_text = '[{"metric": {}, "values": [[1700000000, "1"], [1700000060, "2"]]}]'
    for name, text in [("a.csv", csv_text), ("b.json", json_text), ("c.txt", csv_text), ("d.out", json_text)]:
        rec = load_recording(write(tmp_path, text, name), metric="cpu")
        np.testing.assert_array_equal(rec.metrics["cpu"], [[1.0, 2.0]], err_msg=name)


def test_load_recording_of_a_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        load_recording(tmp_path / "nope.csv")


def test_load_recording_keeps_one_target_of_a_json_file(tmp_path: Path) -> None:
    text = (
        '[{"metric": {"pod": "a"}, "values": [[1700000000, "1"], [1700000060, "2"]]},'
        ' {"metric": {"pod": "b"}, "values": [[1700000000, "3"], [1700000060, "4"]]}]'
    )
    rec = load_recording(write(tmp_path, text, "cpu.json"), target="b")
    assert rec.targets == ("b",)
    np.testing.assert_array_equal(rec.metrics["cpu"], [[3.0, 4.0]])
