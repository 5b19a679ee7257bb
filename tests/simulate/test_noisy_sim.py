"""A max window with noisy_length in `scaler simulate`: the summary and a note say per target how often it was noisy
(read its long span), counted from the decisions' own noise figures; a fleet replayed in blocks or split across
processes reports the same; a policy without one reports as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scaler.cli.main import app
from scaler.policy.model import Policy
from scaler.recordings.model import Recording
from scaler.simulate import stream
from scaler.simulate.replay import Result, demand_for, run, simulate
from scaler.simulate.world import World

STEP = 15.0
T0 = 1_700_006_400.0
TARGETS = ("quiet", "noisy", "both")
NOISY = {"type": "max", "length": "30s", "noisy_length": "5m"}


def policy(window: dict = NOISY) -> Policy:
    return Policy.model_validate({
        "name": "n", "replicas": {"min": 1, "max": 20},
        "metrics": [{"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50, "window": window}],
        "behavior": {"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
                     "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]}},
    })


def recording(hours: float = 4.0) -> Recording:
    """CPU % of 4 replicas at 15 s: a 5-minute sample held (quiet), shot noise every tick (noisy), and the held
    signal for the first half then the noise (both)."""
    rng = np.random.default_rng(3)
    n = int(hours * 3600 / STEP)
    held = np.repeat(rng.uniform(40, 60, n // 20 + 1), 20)[:n]
    shot = rng.poisson(8, n) * 6.0  # a handful of requests a tick: changes near half the level
    both = np.where(np.arange(n) < n // 2, held, shot)
    return Recording(source="noise", times=T0 + STEP * np.arange(n), targets=TARGETS,
                     metrics={"cpu": np.vstack([held, shot, both])}, replicas=None, step=STEP)


@pytest.fixture(scope="module")
def rec() -> Recording:
    return recording()


@pytest.fixture(scope="module")
def noisy_run(rec) -> Result:
    return simulate(policy(), rec, World(), detail=True)


def test_the_counts_are_the_ticks_whose_noise_was_above_the_threshold(noisy_run):
    noise = noisy_run.timeline.decisions.noise[:, 0, :]  # (ticks, targets)
    np.testing.assert_array_equal(noisy_run.window_ticks[:, 0], (noise > 0.25).sum(axis=0))
    quiet, noisy, both = noisy_run.window_ticks[:, 0] / len(noisy_run.times)
    assert quiet == 0 and noisy > 0.85 and 0.35 < both < 0.55


def test_the_summary_and_the_note_tell_each_targets_share(noisy_run):
    targets = noisy_run.summary()["targets"]
    ticks = len(noisy_run.times)
    for k, t in enumerate(TARGETS):
        figures = targets[t]["noisy"]["cpu"]
        assert figures == {"noisy_ticks": int(noisy_run.window_ticks[k, 0]),
                           "noisy_share": round(int(noisy_run.window_ticks[k, 0]) / ticks, 4)}
    (note,) = [n for n in noisy_run.notes if n.startswith("cpu:")]
    share = round(100 * noisy_run.window_ticks[:, 0].sum() / (3 * ticks))
    assert note == (f"cpu: max window (30s; 5m while noisy: changes above 25 % of the level): noisy on {share} % of "
                    f"ticks (per target 0 % to {100 * noisy_run.window_ticks[1, 0] / ticks:.0f} %)")


def test_a_policy_without_the_rule_reports_as_before(rec):
    r = simulate(policy({"type": "max", "length": "30s"}), rec, World())
    assert r.window_ticks is None
    assert all("noisy" not in figures for figures in r.summary()["targets"].values())
    assert not any("noisy" in n for n in r.notes)


class Discard:
    def write(self, result: Result) -> None:
        pass


def test_a_fleet_in_blocks_or_across_processes_reports_as_in_one_go(rec, noisy_run):
    ticks = len(noisy_run.times)
    (blocks,) = stream.replay([policy()], rec, World(), sink=Discard(), block_cells=ticks).results
    world = World()
    split = run(policy(), demand_for(policy(), rec, world), world, targets=TARGETS, workers=2)
    for other in (blocks, split):
        np.testing.assert_array_equal(other.window_ticks, noisy_run.window_ticks)
        assert other.notes == noisy_run.notes
    assert blocks.summary()["targets"] == noisy_run.summary()["targets"]


def test_scaler_simulate_writes_the_share_to_summary_json(tmp_path):
    path = tmp_path / "noisy.yaml"
    path.write_text(json.dumps(policy().model_dump(mode="json", exclude_none=True)))
    csv = tmp_path / "rps.csv"
    shot = np.random.default_rng(5).poisson(3, 480) / 15.0
    csv.write_text("timestamp,rps\n" + "".join(f"{int(T0 + 15 * k)},{v:.4f}\n" for k, v in enumerate(shot)))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", str(path), str(csv), "--capacity", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "noisy on" in result.output
    (figures,) = json.loads((out / "summary.json").read_text())["policies"][0]["targets"].values()
    assert figures["noisy"]["cpu"]["noisy_share"] > 0.9
