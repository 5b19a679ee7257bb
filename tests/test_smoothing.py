"""Smoothing windows: each type on a known sequence, for several targets at once, with missing samples."""

import math

import numpy as np
import pytest

from scaler.policy import Window
from scaler.smoothing import Smoother

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
    ],
    ids=["last", "mean-window-drops-oldest", "max-window-drops-old-peak", "max-window-keeps-peak",
         "percentile-p50", "ewma-half-life"],
)
def test_window_types(window, rows, last):
    assert np.allclose(run(window, rows)[-1], last)


@pytest.mark.parametrize("wtype", ["last", "ewma", "mean", "max", "percentile"])
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


def test_targets_are_independent():
    a = run(Window(type="mean", length=45), [[1], [2], [3]])
    b = run(Window(type="mean", length=45), [[7], [8], [9]])
    both = run(Window(type="mean", length=45), [[1, 7], [2, 8], [3, 9]])
    assert np.allclose(both[:, 0], a[:, 0]) and np.allclose(both[:, 1], b[:, 0])
