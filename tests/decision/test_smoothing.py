"""Smoothing windows: each type on a known sequence, for several targets at once, with missing samples."""

import dataclasses
import math

import numpy as np
import pytest

from scaler.decision.steps import Smoother
from scaler.policy.model import Window

NAN = math.nan


def run(window: Window, rows, interval=15.0):
    sm = Smoother.compile(window, interval)
    st = sm.empty(len(rows[0]))
    out = []
    for row in rows:
        v, st = sm.step(st, np.array(row, dtype=float))
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize(
    "window, rows, last",
    [
        (Window(type="last"), [[1, 2], [3, 4]], [3, 4]),
        # 60 s mean at 15 s ticks = last 4 samples: (2+3+4+5)/4 = 3.5
        (Window(type="mean", length=60), [[1], [2], [3], [4], [5]], [3.5]),
        (Window(type="max", length=30), [[9], [1], [2]], [2]),
        (Window(type="max", length=45), [[9], [1], [2]], [9]),
        # p50 of the last 3 samples (4, 1, 7) = 4
        (Window(type="percentile", length=45, q=50), [[100], [4], [1], [7]], [4]),
        # EWMA half-life 15 s at 15 s ticks: alpha 0.5 -> 0, 0.5*100 = 50, then 50 + 0.5*(100-50) = 75
        (Window(type="ewma", half_life=15), [[0], [100], [100]], [75]),
        # 50, 60, 70 at 15 s ticks: +10 per 15 s; 90 s after the newest sample the line reads 70 + 60 = 130
        (Window(type="trend", length=45, lead=90), [[50], [60], [70]], [130]),
        (Window(type="trend", length=45, lead=30), [[90], [80], [70]], [50]),
        (Window(type="trend", length=60), [[40], [40], [40]], [40]),
        # 10, 30, 20: the fitted line (slope 1/3 per s) passes 25 at the newest sample, not its 20;
        # 15 s ahead it reads 30
        (Window(type="trend", length=45, lead=15), [[10], [30], [20]], [30]),
        # a 30 s window holds the last two samples: 10 then 20, the 100 has left it; 15 s ahead: 30
        (Window(type="trend", length=30, lead=15), [[100], [10], [20]], [30]),
        # one sample says nothing about a slope: the line is flat through it
        (Window(type="trend", length=60, lead=90), [[42]], [42]),
        # 30 then 10: the line would be at -50 in 90 s; no metric goes below zero, so it reads 0
        (Window(type="trend", length=30, lead=90), [[30], [10]], [0]),
    ],
    ids=["last", "mean-window-drops-oldest", "max-window-drops-old-peak", "max-window-keeps-peak",
         "percentile-p50", "ewma-half-life", "trend-rising-reads-ahead", "trend-falling-reads-lower",
         "trend-flat", "trend-fits-a-line-not-the-endpoints", "trend-window-drops-oldest",
         "trend-one-sample-is-flat", "trend-never-below-zero"],
)
def test_window_types(window, rows, last):
    assert np.allclose(run(window, rows)[-1], last)


@pytest.mark.parametrize("wtype", ["last", "ewma", "mean", "max", "percentile", "trend"])
def test_missing_sample_is_no_data_not_zero(wtype):
    """A tick without a sample yields NaN ("no data"), even when the window still holds older samples."""
    out = run(Window(type=wtype, length=60), [[50, 50], [60, NAN]])
    assert out[-1][0] > 0
    assert math.isnan(out[-1][1])


def test_ewma_skips_missing_samples_without_dragging_towards_zero():
    # 100, (missing), 100 -> the average stays 100; a zero-filled gap would have pulled it down.
    out = run(Window(type="ewma", half_life=15), [[100], [NAN], [100]])
    assert out[-1][0] == pytest.approx(100)


def test_mean_ignores_missing_samples_inside_the_window():
    out = run(Window(type="mean", length=60), [[10], [NAN], [30]])
    assert out[-1][0] == pytest.approx(20)


def test_trend_leaves_missing_samples_out_of_the_fit():
    # 10, (missing), 30 at 15 s ticks: the line through (-30 s, 10) and (0 s, 30), not through a zero.
    out = run(Window(type="trend", length=45, lead=15), [[10], [NAN], [30]])
    assert out[-1][0] == pytest.approx(40)


def test_trend_is_the_same_whatever_the_ring_rotation():
    # Rising by 1 per tick: from the third sample (30 s back, half of 60 s) on, 90 s ahead reads 6 above
    # the newest sample, on every turn of the ring (the filling path and the full-window path agree).
    out = run(Window(type="trend", length=60, lead=90), [[float(k)] for k in range(11)])
    assert np.allclose(out[2:, 0], np.arange(2, 11) + 6)


def test_trend_is_flat_until_the_samples_reach_back_half_the_window():
    # 2 min at 15 s ticks: a slope counts once the oldest sample is 60 s back. 10, 20, 30 reach back 30 s:
    # flat at their mean, 20. Two more samples (40, 50) reach back 60 s: the line, 90 s ahead, reads 110.
    out = run(Window(type="trend", length=120, lead=90), [[10], [20], [30], [40], [50]])
    assert out[2, 0] == pytest.approx(20)
    assert out[4, 0] == pytest.approx(110)


def test_lead_only_for_trend():
    with pytest.raises(ValueError, match="lead applies only to type: trend"):
        Window(type="mean", lead=90)
    assert Window(type="trend").effective_lead == 90


def test_targets_are_independent():
    a = run(Window(type="mean", length=45), [[1], [2], [3]])
    b = run(Window(type="mean", length=45), [[7], [8], [9]])
    both = run(Window(type="mean", length=45), [[1, 7], [2, 8], [3, 9]])
    assert np.allclose(both[:, 0], a[:, 0]) and np.allclose(both[:, 1], b[:, 0])


def test_trend_targets_are_independent():
    a = run(Window(type="trend", length=45), [[1], [5], [3]])
    b = run(Window(type="trend", length=45), [[9], [NAN], [7]])
    both = run(Window(type="trend", length=45), [[1, 9], [5, NAN], [3, 7]])
    assert np.allclose(both[:, 0], a[:, 0]) and np.allclose(both[:, 1], b[:, 0], equal_nan=True)


def test_trend_running_sums_match_a_full_fit():
    """A full window is fitted from running sums; over many turns of the ring, with gaps that empty slots
    and refill them, each value matches the fit worked out from the ring alone."""
    sm = Smoother.compile(Window(type="trend", length=300, lead=90), 15.0)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1000, size=(400, 3))
    x[150:153, 1] = NAN  # a gap: the running sums restart once the ring is full again
    st = sm.empty(3)
    used_sums = 0
    for row in x:
        from_scratch = dataclasses.replace(st, sums=None)
        used_sums += st.sums is not None
        v, st = sm.step(st, row)
        ref, _ = sm.step(from_scratch, row)
        assert np.allclose(v, ref, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert used_sums > 300  # most ticks took the running-sum path
