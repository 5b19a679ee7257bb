"""A fleet replayed a block of targets at a time: the same figures and timeline as in one go, written as it is
produced (CSV byte for byte, Parquet in row groups), and a failed run leaves no timeline behind."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from scaler.errors import DataError
from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate import output, stream
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import Result, simulate
from scaler.simulate.world import World
from tests.conftest import ROOT

T = 1_700_000_000
TARGETS = 7
TICKS = 1500


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    """Seven targets, 6 hours at 15 s, each its own load (one with a gap), with replicas."""
    rng = np.random.default_rng(11)
    rows = ["timestamp,target,cpu,replicas"]
    for k in range(TICKS):
        for j in range(TARGETS):
            if j == 2 and 600 <= k < 640:
                continue
            level = 40 + 30 * np.sin(k / (90 + 20 * j)) + rng.normal(0, 8)
            rows.append(f"{T + 15 * k},t{j},{max(0.0, level):.2f},{3 + j % 3}")
    path = tmp_path_factory.mktemp("fleet") / "fleet.csv"
    path.write_text("\n".join(rows) + "\n")
    return load_recording(path)


@pytest.fixture(scope="module")
def policies():
    web = load_policy(ROOT / "policies" / "web.yaml")
    return [web, hpa_baseline(web)]


class Collect:
    def __init__(self) -> None:
        self.blocks: list[Result] = []

    def write(self, result: Result) -> None:
        self.blocks.append(result)


def test_blocks_replay_exactly_as_the_whole(recording, policies) -> None:
    sink = Collect()
    run = stream.replay(policies, recording, World(), sink=sink, block_cells=3 * TICKS)  # three targets a block
    assert [len(b.targets) for b in sink.blocks] == [3, 3, 1] * 2
    for i, policy in enumerate(policies):
        whole = simulate(policy, recording, World())
        got = run.results[i]
        assert got.targets == whole.targets and got.timeline is None
        for name in ("replica_hours", "slo_violation_seconds", "no_data_seconds", "scale_ups", "scale_downs",
                     "peak_replicas"):
            np.testing.assert_array_equal(getattr(got, name), getattr(whole, name), err_msg=name)
        np.testing.assert_array_equal(got.demand.load, whole.demand.load)
        assert got.summary() == whole.summary()
        blocks = sink.blocks[3 * i : 3 * i + 3]
        for field in ("replicas", "ready", "demand", "slo_ok", "observed"):
            joined = np.concatenate([getattr(b.timeline, field) for b in blocks], axis=-1)
            np.testing.assert_array_equal(joined, getattr(whole.timeline, field), err_msg=field)
        np.testing.assert_array_equal(np.concatenate([b.timeline.desired for b in blocks], axis=-1),
                                      whole.timeline.desired)


def test_one_target_replayed_alone_for_the_report_is_the_same(recording, policies) -> None:
    run = stream.replay(policies, recording, World(), sink=Collect(), block_cells=2 * TICKS)
    whole = simulate(policies[1], recording, World())
    alone = run.single(1, 4)
    assert alone.targets == ("t4",)
    np.testing.assert_array_equal(alone.timeline.desired[:, 0], whole.timeline.desired[:, 4])
    np.testing.assert_array_equal(alone.timeline.slo_ok[:, 0], whole.timeline.slo_ok[:, 4])


def test_the_csv_written_in_blocks_is_the_csv_written_whole(recording, policies, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "BLOCK_CELLS", 2 * TICKS)
    run, path = output.replay_to(tmp_path / "out", "csv", policies, recording, World())
    whole = [simulate(p, recording, World()) for p in policies]
    assert path.read_bytes() == output.write_timeline(whole, tmp_path / "whole.csv").read_bytes()
    assert [r.summary() for r in run.results] == [r.summary() for r in whole]


def test_parquet_is_written_a_row_group_per_block(recording, policies, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "BLOCK_CELLS", 2 * TICKS)
    _, path = output.replay_to(tmp_path / "out", "parquet", policies, recording, World())
    assert path.name == "timeline.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 2 * 4  # 4 blocks of 2, 2, 2 and 1 targets a policy
    table = pq.read_table(path)
    with output.write_timeline([simulate(p, recording, World()) for p in policies], tmp_path / "t.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert table.num_rows == len(rows)
    assert table.column("desired").to_pylist() == [int(r["desired"]) for r in rows]
    assert table.column("target").to_pylist() == [r["target"] for r in rows]


def test_auto_writes_parquet_past_a_million_rows(recording, policies, tmp_path: Path, monkeypatch) -> None:
    assert output.choose("auto", output.LARGE_ROWS) == "csv"
    assert output.choose("auto", output.LARGE_ROWS + 1) == "parquet"
    assert output.choose("csv", 10**9) == "csv"
    monkeypatch.setattr(output, "LARGE_ROWS", 1000)
    _, path = output.replay_to(tmp_path / "out", "auto", policies, recording, World())
    assert path.suffix == ".parquet"


def test_a_replay_that_fails_part_way_leaves_no_timeline(recording, policies, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "BLOCK_CELLS", 2 * TICKS)
    real = stream.simulate
    calls = []

    def fails_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise DataError("fleet.csv", "demand reaches 1e+10 replicas of work")
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "simulate", fails_third)
    with pytest.raises(DataError):
        output.replay_to(tmp_path / "out", "csv", policies, recording, World())
    assert not (tmp_path / "out").exists()


def test_the_whole_grid_is_bounded_though_blocks_are_small(recording, policies, monkeypatch) -> None:
    monkeypatch.setattr("scaler.recordings.model.MAX_CELLS", TARGETS * TICKS - 1)
    with pytest.raises(DataError, match="more than the limit of"):
        stream.replay(policies[:1], recording, World(), sink=Collect(), block_cells=TICKS)


def test_explaining_a_run_past_ten_million_cells_is_refused(recording, policies, monkeypatch) -> None:
    monkeypatch.setattr(stream, "DETAIL_CELLS", TARGETS * TICKS - 1)
    with pytest.raises(DataError, match="explaining a run keeps every decision"):
        stream.replay(policies[:1], recording, World(), detail=True)
