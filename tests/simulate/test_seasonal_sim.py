"""A seasonal window in `scaler simulate`: on four days of a daily cycle it finds the pattern and asks once it has
the history; the summary and the notes say so per target, a policy without one reports what it always did, and a
seasonal window that never asks changes no decision."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from scaler.cli.main import app
from scaler.policy.model import Policy
from scaler.recordings.model import Recording
from scaler.simulate import stream
from scaler.simulate.replay import Result, demand_for, run, simulate
from scaler.simulate.world import World

DAY = 86400.0
STEP = 300.0  # a sample every 5 minutes, held for 20 ticks of 15 s
T0 = 1_700_006_400.0  # a midnight (UTC)
TARGETS = ("a", "b", "c")
TOTALS = {"replica_hours", "slo_violation_seconds", "no_data_seconds", "scale_ups", "scale_downs", "peak_replicas"}

CPU = {"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50, "window": {"type": "last"}}
BEHAVIOR = {
    "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
    "scale_down": {"stabilization": 60, "policies": [{"type": "pods", "value": 100, "period": 15}]},
}


def policy_doc(*, seasonal: dict | None = None) -> dict:
    metrics = [CPU]
    if seasonal is not None:
        # the same CPU, read as yesterday's load at this time (lead 90 s) at today's level
        metrics = [CPU, {"name": "cpu_daily", "target": 70, "window": {"type": "seasonal", "period": "1d", **seasonal}}]
    return {
        "name": "daily" if seasonal is not None else "plain",
        "replicas": {"min": 1, "max": 20},
        "metrics": metrics,
        "behavior": BEHAVIOR,
    }


def policy(**kw) -> Policy:
    return Policy.model_validate(policy_doc(**kw))


def daily_cycle(days: float = 4.0, *, seed: int = 2) -> Recording:
    """CPU % of 4 recorded replicas: 50 +- 30 over the day, each target at its own hour, with a little noise."""
    rng = np.random.default_rng(seed)
    times = T0 + STEP * np.arange(int(days * DAY / STEP))
    phase = np.array([0.0, 1.0, 2.5])[:, None]
    cpu = 50 + 30 * np.sin(2 * np.pi * times[None, :] / DAY + phase) + rng.normal(0.0, 2.0, (3, times.size))
    return Recording(source="daily-cycle", times=times, targets=TARGETS, metrics={"cpu": cpu}, replicas=None, step=STEP)


@pytest.fixture(scope="module")
def rec() -> Recording:
    return daily_cycle()


@pytest.fixture(scope="module")
def seasonal_run(rec) -> Result:
    return simulate(policy(seasonal={}), rec, World())


def test_the_summary_tells_each_targets_correlation_and_how_often_it_asked(seasonal_run):
    summary = seasonal_run.summary()
    ticks = summary["ticks"]
    assert ticks == 4 * DAY / 15
    for t in TARGETS:
        figures = summary["targets"][t]
        assert set(figures) == TOTALS | {"seasonal"}
        daily = figures["seasonal"]["cpu_daily"]
        assert set(daily) == {"correlation", "asked_ticks", "asked_share"}
        assert daily["correlation"] > 0.8
        # it asks once it has the history (at the earliest a day and a half in), and then on every tick
        assert 0.3 < daily["asked_share"] <= 1 - 1.5 / 4 + 0.01
        assert daily["asked_share"] == round(daily["asked_ticks"] / ticks, 4)
    json.dumps(summary)  # summary.json takes it as it is


def test_the_note_says_what_the_seasonal_window_found(seasonal_run):
    (note,) = [n for n in seasonal_run.notes if n.startswith("cpu_daily:")]
    m = re.fullmatch(
        r"cpu_daily: seasonal window \(1d\): correlation at the period at the end ([0-9.]+) \(per target "
        r"([0-9.]+) to ([0-9.]+)\), at least 0\.5 to ask; it asked on (\d+) % of ticks",
        note,
    )
    assert m, note
    median, low, high, share = (float(g) for g in m.groups())
    corr = seasonal_run.seasonal_correlation[:, 1]
    assert (median, low, high) == (round(float(np.median(corr)), 2), round(corr.min(), 2), round(corr.max(), 2))
    assert share == round(100 * seasonal_run.window_ticks[:, 1].sum() / (3 * len(seasonal_run.times)))


def test_a_policy_without_a_seasonal_window_reports_as_before(rec):
    r = simulate(policy(), rec, World())
    assert r.window_ticks is None and r.seasonal_correlation is None
    summary = r.summary()
    assert all(set(summary["targets"][t]) == TOTALS for t in TARGETS)
    assert not any("seasonal" in n for n in r.notes)


def test_a_seasonal_window_that_never_asks_changes_no_decision(rec, seasonal_run):
    """A noisy cycle never correlates perfectly: with min_correlation 1 the window has no opinion all along, and
    the decisions are those of the policy without it (no opinion holds nothing back and asks for nothing)."""
    plain = simulate(policy(), rec, World())
    silent = simulate(policy(seasonal={"min_correlation": 1.0}), rec, World())
    assert (silent.window_ticks[:, 1] == 0).all()
    np.testing.assert_array_equal(silent.timeline.desired, plain.timeline.desired)
    np.testing.assert_array_equal(silent.timeline.reasons, plain.timeline.reasons)
    # asking, it does change them
    assert not np.array_equal(seasonal_run.timeline.desired, plain.timeline.desired)


def test_before_two_days_it_has_not_asked(rec):
    """A day and a quarter of the recording: too little history for the pattern, so it never asks."""
    short = Recording(
        source="short",
        times=rec.times[: int(1.25 * DAY / STEP)],
        targets=TARGETS,
        metrics={"cpu": rec.metrics["cpu"][:, : int(1.25 * DAY / STEP)]},
        replicas=None,
        step=STEP,
    )
    r = simulate(policy(seasonal={}), short, World())
    assert (r.window_ticks[:, 1] == 0).all() and np.isnan(r.seasonal_correlation[:, 1]).all()
    daily = r.summary()["targets"]["a"]["seasonal"]["cpu_daily"]
    assert daily == {"correlation": None, "asked_ticks": 0, "asked_share": 0.0}
    (note,) = [n for n in r.notes if n.startswith("cpu_daily:")]
    assert "not known at the end (under 1.5 periods of history)" in note and "asked on 0 % of ticks" in note


class Discard:
    def write(self, result: Result) -> None:
        pass


def test_a_fleet_replayed_in_blocks_reports_its_seasonal_figures_as_in_one_go(rec, seasonal_run):
    """`scaler simulate --out` replays a large fleet a block of targets at a time: the seasonal figures and the
    note are the whole fleet's, not the first block's."""
    ticks = len(seasonal_run.times)
    run = stream.replay([policy(seasonal={})], rec, World(), sink=Discard(), block_cells=ticks)  # a target a block
    (blocks,) = run.results
    np.testing.assert_array_equal(blocks.window_ticks, seasonal_run.window_ticks)
    np.testing.assert_array_equal(blocks.seasonal_correlation, seasonal_run.seasonal_correlation)
    assert blocks.summary()["targets"] == seasonal_run.summary()["targets"]
    assert blocks.notes == seasonal_run.notes


def test_targets_split_across_processes_report_their_seasonal_figures_as_in_one(rec, seasonal_run):
    daily, world = policy(seasonal={}), World()
    split = run(daily, demand_for(daily, rec, world), world, targets=TARGETS, workers=2)
    np.testing.assert_array_equal(split.window_ticks, seasonal_run.window_ticks)
    np.testing.assert_array_equal(split.seasonal_correlation, seasonal_run.seasonal_correlation)
    assert split.notes == seasonal_run.notes


def test_scaler_simulate_runs_a_seasonal_policy_file(tmp_path, rec):
    path = tmp_path / "daily.yaml"
    path.write_text(yaml.safe_dump(policy_doc(seasonal={"headroom_q": 95})))
    rows = ["timestamp,target,cpu"] + [
        f"{int(t)},{name},{rec.metrics['cpu'][j, k]:.3f}"
        for k, t in enumerate(rec.times)
        for j, name in enumerate(TARGETS)
    ]
    data = tmp_path / "daily.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["simulate", str(path), str(data), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "note: cpu_daily: seasonal window (1d)" in res.output
    summary = json.loads((out / "summary.json").read_text())
    (daily,) = summary["policies"]
    for t in TARGETS:
        assert daily["targets"][t]["seasonal"]["cpu_daily"]["correlation"] > 0.8
