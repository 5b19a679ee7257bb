"""Recorded metrics from Prometheus query_range JSON: accepted shapes, target naming, directories, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scaler.errors import DataError
from scaler.recordings.load import load_prometheus_json, load_recording

T = 1_700_000_000


def series(labels: dict[str, str], values: list[str], start: int = T, step: int = 60) -> dict[str, Any]:
    return {"metric": labels, "values": [[start + step * k, v] for k, v in enumerate(values)]}


RESULT = [
    series({"__name__": "cpu", "job": "app", "service": "web"}, ["0.5", "0.6", "NaN"]),
    series({"__name__": "cpu", "job": "app", "service": "api"}, ["1", "+Inf", "2.5"]),
]


def write(tmp_path: Path, doc: Any, name: str = "cpu.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "doc",
    [
        {"status": "success", "data": {"resultType": "matrix", "result": RESULT}},
        {"resultType": "matrix", "result": RESULT},
        RESULT,
    ],
    ids=["api-response", "data-only", "result-list"],
)
def test_every_accepted_shape_loads_the_same_recording(tmp_path: Path, doc: Any) -> None:
    rec = load_prometheus_json(write(tmp_path, doc))
    assert rec.targets == ("web", "api")  # `service` is the one label that varies
    np.testing.assert_array_equal(rec.times, [T, T + 60, T + 120])
    # strings parsed; NaN is no data, and so is +Inf (x/0 in a ratio query says nothing about load)
    np.testing.assert_array_equal(rec.metrics["cpu"], [[0.5, 0.6, np.nan], [1.0, np.nan, 2.5]])
    assert rec.step == 60 and rec.replicas is None


def test_the_metric_is_named_by_the_option_else_by_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, RESULT, "requests_per_second.json")
    assert list(load_prometheus_json(path).metrics) == ["requests_per_second"]
    assert list(load_prometheus_json(path, metric="rps").metrics) == ["rps"]


def test_a_file_named_replicas_holds_replicas(tmp_path: Path) -> None:
    cpu = write(tmp_path, RESULT, "cpu.json")
    write(
        tmp_path,
        [series({"service": "web"}, ["3", "3", "4"]), series({"service": "api"}, ["1", "2", "2"])],
        "replicas.json",
    )
    rec = load_prometheus_json(tmp_path)
    assert list(rec.metrics) == ["cpu"]
    assert rec.replicas is not None
    np.testing.assert_array_equal(rec.replicas, [[3, 3, 4], [1, 2, 2]])
    assert load_prometheus_json(cpu).replicas is None


@pytest.mark.parametrize(
    ("result", "target_label", "targets"),
    [
        ([series({"service": "web", "pod": "web-1"}, ["1", "2"])], None, ("default",)),
        ([series({"service": "web", "pod": "web-1"}, ["1", "2"])], "service", ("web",)),
        (
            [series({"job": "x", "pod": "a"}, ["1", "2"]), series({"job": "x", "pod": "b"}, ["1", "2"])],
            None,
            ("a", "b"),
        ),
        (
            [series({"pod": "a", "zone": "1"}, ["1", "2"]), series({"pod": "b", "zone": "2"}, ["1", "2"])],
            "zone",
            ("1", "2"),
        ),
        ([series({}, ["1", "2"])], None, ("default",)),
    ],
    ids=[
        "one-series-is-default",
        "one-series-by-target-label",
        "the-one-varying-label",
        "target-label-picks-among-varying",
        "no-labels-at-all",
    ],
)
def test_targets_are_named_by_label(
    tmp_path: Path, result: list[Any], target_label: str | None, targets: tuple[str, ...]
) -> None:
    assert load_prometheus_json(write(tmp_path, result), target_label=target_label).targets == targets


BAD: list[tuple[Any, dict[str, str], str, str]] = [
    (
        [series({"pod": "a", "zone": "1"}, ["1", "2"]), series({"pod": "b", "zone": "2"}, ["1", "2"])],
        {},
        "",
        "labels 'pod', 'zone' all vary, so which one names the targets is ambiguous: pass target_label=LABEL",
    ),
    ([series({}, ["1", "2"]), series({}, ["3", "4"])], {}, "", "no label varies"),
    (
        [series({"service": "web"}, ["1", "2"]), series({"pod": "b"}, ["1", "2"])],
        {"target_label": "service"},
        'result[1] {pod="b"}',
        "has no 'service' label",
    ),
    (
        [series({"pod": "a"}, ["1", "2"]), series({"pod": "b"}, ["1", "2"]), series({}, ["1", "2"])],
        {},
        "result[2] {}",
        "has no 'pod' label, which names the others",
    ),
    (
        [
            series({"service": "web", "pod": "a"}, ["1", "2"]),
            series({"service": "web", "pod": "b"}, ["1", "2"]),
        ],
        {"target_label": "service"},
        'result[1] {pod="b", service="web"}',
        "names target 'web' like result[0]: aggregate the query by 'service'",
    ),
    (
        {"status": "error", "errorType": "bad_data", "error": 'parse error at char 5: unexpected "("'},
        {},
        "",
        'Prometheus answered bad_data: parse error at char 5: unexpected "("',
    ),
    (
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {},
        "",
        "resultType is 'vector', not 'matrix'",
    ),
    ([{"metric": {}, "value": [T, "1"]}], {}, "result[0]", "one 'value' is an instant query"),
    ({"foo": 1}, {}, "", "not a Prometheus query_range answer"),
    ([], {}, "", "no series in the result"),
    ('{"status": "success", "data": ', {}, "", "line 1, column 31: not valid JSON"),
    ([series({"pod": "a"}, ["1", "-0.5"])], {}, 'result[0] {pod="a"}, values[1]', "negative value '-0.5'"),
    ([series({"pod": "a"}, ["1", "-Inf"])], {}, 'result[0] {pod="a"}, values[1]', "negative value '-Inf'"),
    (
        [series({"pod": "a"}, ["1", "many"])],
        {},
        'result[0] {pod="a"}, values[1]',
        'expected [seconds, "value"]',
    ),
    ([{"metric": {}, "values": [[T, "1"], [T + 60]]}], {}, "result[0] {}, values[1]", "found [1700000060]"),
    (
        [{"metric": {}, "values": [[T, "1"], [T + 60, "2"], [T, "3"]]}],
        {},
        "result[0] {}, values[2]",
        "repeats the timestamp of values[0]",
    ),
]
BAD_IDS = [
    "two-varying-labels",
    "identical-label-sets",
    "target-label-missing",
    "varying-label-missing",
    "not-aggregated-by-target-label",
    "prometheus-error",
    "instant-vector",
    "instant-series",
    "not-a-response",
    "empty-result",
    "truncated-json",
    "negative-value",
    "negative-infinity",
    "non-numeric-value",
    "not-a-pair",
    "repeated-timestamp",
]


@pytest.mark.parametrize(("doc", "options", "where", "what"), BAD, ids=BAD_IDS)
def test_bad_input_is_one_data_error_naming_the_file_and_place(
    tmp_path: Path, doc: Any, options: dict[str, str], where: str, what: str
) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(DataError) as err:
        load_prometheus_json(path, **options)
    assert err.value.source == str(path)
    (problem,) = err.value.problems
    assert problem.where == where
    assert what in problem.what


def test_millisecond_timestamps_are_named_pair_by_pair(tmp_path: Path) -> None:
    path = write(tmp_path, [series({}, ["1", "2"], start=T * 1000)])
    with pytest.raises(DataError) as err:
        load_prometheus_json(path)
    assert [p.where for p in err.value.problems] == ["result[0] {}, values[0]", "result[0] {}, values[1]"]
    assert "looks like milliseconds since the epoch" in err.value.problems[0].what


def test_series_of_different_lengths_share_the_union_of_times(tmp_path: Path) -> None:
    doc = [series({"pod": "a"}, ["1", "2", "3"]), series({"pod": "b"}, ["7", "8"], start=T + 90)]
    rec = load_prometheus_json(write(tmp_path, doc))
    np.testing.assert_array_equal(rec.times, [T, T + 60, T + 90, T + 120, T + 150])
    np.testing.assert_array_equal(
        rec.metrics["cpu"], [[1, 2, np.nan, 3, np.nan], [np.nan, np.nan, 7, np.nan, 8]]
    )
    assert rec.step == 60  # each target's own spacing, not the 30 s between union times


# ---- directories: every *.json and *.csv merged on the union of timestamps


def _directory(tmp_path: Path) -> Path:
    d = tmp_path / "recording"
    d.mkdir()
    write(
        d,
        [series({"service": "web"}, ["50", "60", "70"]), series({"service": "api"}, ["5", "6", "7"])],
        "cpu.json",
    )
    # requests every 60 s but 30 s after the cpu samples; `value` is named by the file's stem
    (d / "rps.csv").write_text(
        f"timestamp,target,value\n{T + 30},web,100\n{T + 30},api,10\n{T + 90},web,110\n{T + 90},api,11\n"
    )
    (d / "notes.txt").write_text("not a recording; ignored")
    return d


def test_a_directory_merges_json_and_csv_by_target_name(tmp_path: Path) -> None:
    rec = load_prometheus_json(_directory(tmp_path))
    assert rec.targets == ("web", "api")
    assert sorted(rec.metrics) == ["cpu", "rps"]
    np.testing.assert_array_equal(rec.times, [T, T + 30, T + 60, T + 90, T + 120])
    np.testing.assert_array_equal(rec.metrics["cpu"][0], [50, np.nan, 60, np.nan, 70])
    np.testing.assert_array_equal(rec.metrics["rps"][1], [np.nan, 10, np.nan, 11, np.nan])


def test_the_options_narrow_a_directory(tmp_path: Path) -> None:
    d = _directory(tmp_path)
    assert list(load_prometheus_json(d, metric="rps").metrics) == ["rps"]
    rec = load_recording(d, metric="cpu", target="api")
    assert rec.targets == ("api",)
    np.testing.assert_array_equal(rec.metrics["cpu"], [[5, np.nan, 6, np.nan, 7]])


def test_target_label_applies_to_every_json_file_of_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "recording"
    d.mkdir()
    two = [
        series({"service": "web", "pod": "w1"}, ["1", "2"]),
        series({"service": "api", "pod": "a1"}, ["3", "4"]),
    ]
    write(d, two, "cpu.json")
    write(d, two, "memory.json")
    with pytest.raises(DataError, match="ambiguous"):
        load_prometheus_json(d)
    assert load_prometheus_json(d, target_label="service").targets == ("web", "api")


def test_files_that_disagree_on_targets_are_one_error(tmp_path: Path) -> None:
    d = _directory(tmp_path)
    write(d, [series({"service": "web"}, ["1", "2"]), series({"service": "db"}, ["1", "2"])], "memory.json")
    with pytest.raises(DataError) as err:
        load_prometheus_json(d)
    assert err.value.source == str(d)
    (problem,) = err.value.problems
    assert problem.where == str(d / "memory.json")
    assert "targets 'web', 'db' differ from 'web', 'api'" in problem.what


def test_a_metric_from_two_files_is_an_error(tmp_path: Path) -> None:
    d = _directory(tmp_path)
    (d / "wide.csv").write_text(
        f"timestamp,target,cpu\n{T},web,1\n{T},api,1\n{T + 60},web,1\n{T + 60},api,1\n"
    )
    with pytest.raises(DataError, match="metric 'cpu' also comes from .*cpu.json"):
        load_prometheus_json(d)


def test_problems_in_several_files_are_reported_together(tmp_path: Path) -> None:
    d = tmp_path / "recording"
    d.mkdir()
    write(d, [series({}, ["1", "-2"])], "cpu.json")
    (d / "rps.csv").write_text(f"timestamp,value\n{T},1\n{T + 60},lots\n")
    with pytest.raises(DataError) as err:
        load_prometheus_json(d)
    assert [str(p) for p in err.value.problems] == [
        "cpu.json: result[0] {}, values[1]: negative value '-2'",
        "rps.csv: row 3, column 'value': not a number: 'lots'",
    ]


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.json or \.csv files"):
        load_prometheus_json(tmp_path)
