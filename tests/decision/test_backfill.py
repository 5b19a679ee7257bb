"""Filling a policy's windows from history (scaler.decision.backfill): the span each window asks for, and a fill
that leaves a window where the same samples, ticked one by one, would have left it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.decision import backfill
from scaler.decision.backfill import EWMA_REACH, MAX_SAMPLES, Span, spans
from scaler.decision.decide import decide
from scaler.decision.params import params_of
from scaler.decision.state import initial_state
from tests.conftest import make_policy

NAN = math.nan
DT = 15.0
NOW = 1_700_006_400.0 + 12 * 3600 + 100  # 2023-11-15 12:01:40 UTC, 100 s into a 5-minute bucket
DAY = 86400.0


def metric(window: dict, *, name: str = "m", kind: str = "utilization", target: float = 70.0) -> dict:
    return {"name": name, "query": name, "kind": kind, "target": target, "window": window}


def params(*windows: dict, kind: str = "utilization", target: float = 70.0):
    return params_of(
        make_policy(
            metrics=[metric(w, name=f"m{i}", kind=kind, target=target) for i, w in enumerate(windows)], interval=DT
        )
    )


# -- spans ------------------------------------------------------------------------------------------------------


def test_a_20_minute_trend_at_15_s_asks_for_80_samples_ending_one_interval_before_now():
    (span,) = spans(params({"type": "trend", "length": "20m"}), NOW)
    assert span == Span(NOW - 1200, NOW - 15, 15)
    assert span.samples == 80


def test_an_ewma_spans_the_samples_that_still_weigh_in():
    # half-life 30 s at 15 s: alpha = 1 - 0.5 ** 0.5 = 0.293; 20 ticks leave 0.707 ** 20 = 0.00098 of the start
    p = params({"type": "ewma", "half_life": 30})
    (span,) = spans(p, NOW)
    assert span == Span(NOW - 20 * 15, NOW - 15, 15)
    keep = 1 - float(p.alpha[0])
    assert keep**span.samples <= EWMA_REACH < keep ** (span.samples - 1)


def test_a_very_slow_ewma_is_filled_with_at_most_max_samples():
    # half-life 1 day at 15 s would weigh in for 57,000 ticks; a range query and a ring stop at 10,000
    (span,) = spans(params({"type": "ewma", "half_life": "1d"}), NOW)
    assert span.samples == MAX_SAMPLES and span.end == NOW - 15


@pytest.mark.parametrize("window", [{"type": "last"}, {"type": "mean", "length": 15}], ids=["last", "one-slot-mean"])
def test_a_window_that_keeps_nothing_between_ticks_needs_no_history(window):
    assert spans(params(window, {"type": "mean", "length": "1m"}), NOW) == [None, Span(NOW - 60, NOW - 15, 15)]


def test_a_seasonal_window_asks_one_sample_per_closed_bucket_of_its_last_two_periods():
    p = params_of(
        make_policy(
            metrics=[
                metric({"type": "last"}, name="cpu"),
                metric({"type": "seasonal", "period": "1d", "bucket": "5m"}, name="rps", kind="gauge", target=100),
            ],
            interval=DT,
        )
    )
    none, span = spans(p, NOW)
    assert none is None
    assert span.step == 300 and span.samples == 2 * 288
    times = np.arange(span.samples) * span.step + span.start
    assert np.all(times % 300 == 150), "mid-bucket: a start rounded to a whole second stays in its bucket"
    buckets = times // 300
    now_bucket = NOW // 300  # 12:00-12:05, still open: not asked for
    assert buckets[-1] == now_bucket - 1 and buckets[0] == now_bucket - 576
    assert np.array_equal(np.diff(buckets), np.ones(575))


# -- fill equals ticking ----------------------------------------------------------------------------------------

WINDOWS = [
    {"type": "mean", "length": "2m"},
    {"type": "max", "length": "2m"},
    {"type": "percentile", "length": "2m", "q": 90},
    {"type": "trend", "length": "2m", "lead": 60},
    {"type": "trend", "length": "20m", "lead": "5m"},
    {"type": "ewma", "half_life": 30},
]
WINDOW_IDS = ["mean", "max", "p90", "trend-2m", "trend-20m", "ewma"]


def samples(n: int, targets: int = 3, *, seed: int = 7) -> np.ndarray:
    """(n, targets) noisy ramps, with gaps (NaN) for the third target."""
    rng = np.random.default_rng(seed)
    xs = 30 + np.arange(n)[:, None] * np.array([0.5, -0.2, 0.1]) + rng.normal(0, 3, (n, targets))
    xs[n // 3 :: 5, 2] = NAN
    return xs


def ticked(p, state, xs, *, start, ready, current):
    """`state` moved on by one tick per row of xs, at start, start + 15, ..."""
    for k, row in enumerate(xs):
        state = decide(p, state, row[None, :], current=current, ready=ready, now=start + DT * k).state
    return state


def last_tick(p, state, x, *, ready, current):
    return decide(p, state, x[None, :], current=current, ready=ready, now=NOW).steps.smoothed[0]


@pytest.mark.parametrize("kind", ["utilization", "gauge"])
@pytest.mark.parametrize("n", [5, 93], ids=["fewer-than-slots", "more-than-slots"])
@pytest.mark.parametrize("window", WINDOWS, ids=WINDOW_IDS)
def test_a_filled_window_reads_as_if_its_samples_had_been_ticked(window, n, kind):
    """N samples filled and one tick give the smoothed value of N + 1 ticks from fresh. A utilization window keeps
    value x ready replicas (here 2, 3 and 5): both ways take `ready` the same."""
    p = params(window, kind=kind)
    current, ready = np.array([4.0, 4.0, 6.0]), np.array([2.0, 3.0, 5.0])
    xs, x = samples(n), np.array([60.0, 25.0, 33.0])
    times = NOW - DT * np.arange(n, 0, -1)
    by_ticks = last_tick(
        p,
        ticked(p, initial_state(p, current, times[0]), xs, start=times[0], ready=ready, current=current),
        x,
        ready=ready,
        current=current,
    )
    filled = backfill.fill(p, initial_state(p, current, NOW), 0, times, xs, ready=ready, now=NOW)
    by_fill = last_tick(p, filled, x, ready=ready, current=current)
    assert np.all(np.isfinite(by_ticks))
    assert by_fill == pytest.approx(by_ticks, rel=1e-9)


def test_a_filled_trend_reads_the_ramp_ahead_where_a_fresh_one_is_flat():
    # 30 % rising to 75 % over the last 20 minutes: +2.25 % a minute; 5 minutes ahead of 75 % is 86.25 %
    p = params({"type": "trend", "length": "20m", "lead": "5m"})
    one = np.ones(1)
    times = NOW - DT * np.arange(80, 0, -1)
    ramp = (75 - 0.0375 * (NOW - times))[:, None]
    filled = backfill.fill(p, initial_state(p, one, NOW), 0, times, ramp, ready=one, now=NOW)
    assert last_tick(p, filled, np.array([75.0]), ready=one, current=one) == pytest.approx([86.25])
    assert last_tick(p, initial_state(p, one, NOW), np.array([75.0]), ready=one, current=one) == pytest.approx([75])


@pytest.mark.parametrize("window", WINDOWS, ids=WINDOW_IDS)
def test_a_saved_window_moves_on_over_the_history(window):
    """A state saved after 7 ticks, filled with the 30 samples after them: as if all 37 had been ticked."""
    p = params(window)
    current = np.array([4.0, 4.0, 6.0])
    xs, x = samples(37), np.array([60.0, 25.0, 33.0])
    start = NOW - DT * 37
    saved = ticked(p, initial_state(p, current, start), xs[:7], start=start, ready=current, current=current)
    by_ticks = last_tick(
        p,
        ticked(p, saved, xs[7:], start=start + 7 * DT, ready=current, current=current),
        x,
        ready=current,
        current=current,
    )
    filled = backfill.fill(p, saved, 0, NOW - DT * np.arange(30, 0, -1), xs[7:], ready=current, now=NOW)
    assert last_tick(p, filled, x, ready=current, current=current) == pytest.approx(by_ticks, rel=1e-9)
    # and unlike the saved window alone
    alone = last_tick(p, saved, x, ready=current, current=current)
    assert not np.allclose(alone, by_ticks, equal_nan=True)


@pytest.mark.parametrize("window", WINDOWS[:4], ids=WINDOW_IDS[:4])
def test_a_target_the_history_has_nothing_for_keeps_its_saved_window(window):
    """History for targets 0 and 1 only: target 2 reads exactly as its saved window would, as if no time had
    passed for it; the others move on."""
    p = params(window)
    current = np.array([4.0, 4.0, 6.0])
    xs, x = samples(37), np.array([60.0, 25.0, 33.0])
    start = NOW - DT * 37
    saved = ticked(p, initial_state(p, current, start), xs[:7], start=start, ready=current, current=current)
    history = xs[7:].copy()
    history[:, 2] = NAN
    filled = backfill.fill(p, saved, 0, NOW - DT * np.arange(30, 0, -1), history, ready=current, now=NOW)
    got = last_tick(p, filled, x, ready=current, current=current)
    alone = last_tick(p, saved, x, ready=current, current=current)
    assert got[2] == pytest.approx(alone[2], rel=1e-9)
    by_ticks = last_tick(
        p,
        ticked(p, saved, xs[7:], start=start + 7 * DT, ready=current, current=current),
        x,
        ready=current,
        current=current,
    )
    assert got[:2] == pytest.approx(by_ticks[:2], rel=1e-9)


# -- seasonal ---------------------------------------------------------------------------------------------------


def daily(t):
    """Requests per second over a day: 300 +- 200, highest at 06:00 UTC."""
    return 300 + 200 * np.sin(2 * np.pi * np.asarray(t) / DAY)


def test_a_seasonal_window_filled_from_two_days_asks_at_its_first_tick():
    p = params_of(
        make_policy(
            metrics=[
                metric({"type": "last"}, name="cpu"),
                metric({"type": "seasonal", "period": "1d", "bucket": "5m"}, name="rps", kind="gauge", target=100),
            ],
            interval=DT,
        )
    )
    _, span = spans(p, NOW)
    times = span.start + span.step * np.arange(span.samples)
    xs = np.stack([daily(times), 2 * daily(times)], axis=1)  # two targets, one twice as busy
    current = np.array([3.0, 3.0])
    fresh = initial_state(p, current, NOW)
    obs = np.array([[60.0, 60.0], [daily(NOW), 2 * daily(NOW)]])

    cold = decide(p, fresh, obs, current=current, now=NOW).steps
    assert cold.no_opinion[1].all() and np.isnan(cold.correlation[1]).all()

    filled = backfill.fill(p, fresh, 1, times, xs, ready=current, now=NOW)
    warm = decide(p, filled, obs, current=current, now=NOW).steps
    assert not warm.no_opinion[1].any()
    assert warm.correlation[1] == pytest.approx([1, 1], abs=1e-9)
    assert warm.level_ratio[1] == pytest.approx([1, 1])
    # 12:01:40 + 90 s lead reads yesterday's 12:00-12:05 bucket, its one sample taken at 12:02:30
    yesterday = daily((NOW // 300) * 300 + 150 - DAY)
    assert warm.smoothed[1] == pytest.approx([yesterday, 2 * yesterday])
    # gauge: 298 rps at 100 per replica asks for 3, 596 for 6
    assert list(decide(p, filled, obs, current=current, now=NOW).desired) == [3, 6]


# -- nothing else moves -----------------------------------------------------------------------------------------


def test_fill_changes_only_that_windows_rows_and_returns_a_new_state():
    p = params({"type": "mean", "length": "1m"}, {"type": "trend", "length": "2m"}, {"type": "ewma"})
    current = np.array([4.0, 4.0])
    state = initial_state(p, current, NOW - 60)
    for k, x in enumerate([90.0, 95.0, 20.0]):  # up, then down: events, cooldown clocks and recommendations
        now = NOW - 45 + DT * k
        d = decide(p, state, np.full((3, 2), x), current=current, now=now)
        state = d.state.with_applied(now, current, d.desired.astype(float))
        current = d.desired.astype(float)
    assert np.isfinite(state.last_up).all() and np.isfinite(state.ev_t).any()
    before = state.copy()

    times = NOW - DT * np.arange(8, 0, -1)
    out = backfill.fill(p, state, 1, times, np.full((8, 2), 50.0), ready=current, now=NOW)

    for name in state._fields:  # the state passed in is as it was
        assert np.array_equal(getattr(state, name), getattr(before, name), equal_nan=True), name
    a, b = int(p.ring_start[1]), int(p.ring_start[1] + p.slots[1])
    # a utilization window keeps 50 % x the replicas serving (the count after the ticks above)
    assert np.all(out.rings[a:b] == 50.0 * current) and not np.shares_memory(out.rings, state.rings)
    assert np.array_equal(
        np.delete(out.rings, np.s_[a:b], axis=0), np.delete(state.rings, np.s_[a:b], axis=0), equal_nan=True
    ), "the other metrics' windows"
    assert list(out.heads) == [state.heads[0], (state.heads[1] + 8) % 8, state.heads[2]]
    assert list(out.resync) == [False, True, False]  # the trend adds its sums up afresh from the filled ring
    for name in set(state._fields) - {"rings", "heads", "resync"}:
        assert np.array_equal(getattr(out, name), getattr(state, name), equal_nan=True), name


def test_a_last_window_is_not_filled():
    p = params({"type": "last"})
    state = initial_state(p, np.ones(2), NOW)
    out = backfill.fill(p, state, 0, np.array([NOW - 15]), np.array([[99.0, 99.0]]), ready=np.ones(2), now=NOW)
    assert np.isnan(out.rings).all()


@pytest.mark.parametrize(
    "times, values",
    [
        (np.array([NOW - 30, NOW - 15]), np.array([1.0, 2.0])),  # one row of targets, not (samples, targets)
        (np.array([NOW - 30, NOW - 15]), np.ones((2, 3))),  # three targets for a state of two
        (np.array([NOW - 15]), np.ones((2, 2))),  # two samples, one time
        (np.array([NOW - 15]), np.ones((1, 2, 1))),
    ],
    ids=["one-dimensional", "too-many-targets", "times-and-samples-differ", "three-dimensional"],
)
def test_values_of_the_wrong_shape_are_a_value_error(times, values):
    p = params({"type": "mean", "length": "1m"})
    state = initial_state(p, np.ones(2), NOW)
    with pytest.raises(ValueError, match="expected"):
        backfill.fill(p, state, 0, times, values, ready=np.ones(2), now=NOW)
