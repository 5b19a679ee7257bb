"""The seasonal window: the load one period ago, `lead` ahead, times the level ratio (plus a noise headroom), asked
only while the history repeats itself; otherwise no opinion. Pinned on its own (Smoother.step(now=...)) against a
numpy reading of the samples fed, and through decide(), whose compiled tick must agree with it tick for tick."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

from scaler.decision import explain as explain_module
from scaler.decision.decide import decide
from scaler.decision.explain import Values, explain
from scaler.decision.params import params_of
from scaler.decision.reasons import Reason
from scaler.decision.state import initial_state
from scaler.decision.steps import Smoother, SmoothState
from scaler.policy.model import Window
from tests.conftest import make_policy

NAN = math.nan
DAY = 86400.0
HOUR = 3600.0
DT = 15.0
T0 = 1_700_006_400.0  # a midnight (UTC): bucket n of the clock starts every 5 minutes from here
assert T0 % DAY == 0

DAILY = Window(type="seasonal", period="1d", bucket="5m")  # level 30m, lead 90 s, min_correlation 0.5
HOURLY = Window(type="seasonal", period="1h", bucket="1m", level="10m")  # the same shape, 24 times shorter
PARTS = ("correlation", "season", "level_ratio", "headroom", "no_opinion")
CPU = {"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50, "window": {"type": "last"}}


@dataclass
class Run:
    """A window fed tick by tick: every tick's value and its seasonal numbers, (ticks, targets) each."""

    times: np.ndarray
    xs: np.ndarray
    value: np.ndarray
    parts: dict[str, np.ndarray]
    state: SmoothState


def feed(window: Window, times: np.ndarray, xs: np.ndarray, *, state: SmoothState | None = None) -> Run:
    """Step `window` through samples xs (ticks, targets) taken at `times`, from `state` (default: empty)."""
    sm = Smoother.compile(window, DT)
    st = sm.empty(xs.shape[1]) if state is None else state
    values, parts = [], {name: [] for name in PARTS}
    for now, x in zip(times, xs, strict=True):
        v, st = sm.step(st, x, now=float(now))
        values.append(v.copy())
        for name in PARTS:
            parts[name].append(st.seasonal[name])
    return Run(times, xs, np.array(values), {k: np.array(v) for k, v in parts.items()}, st)


def pattern(period: float, ticks: int, *, amplitude=(40.0, 25.0, 10.0), noise=1.5, seed=0):
    """50 + a x sin(2 pi t / period) per target (each a phase of its own), with a little noise, from T0."""
    rng = np.random.default_rng(seed)
    times = T0 + DT * np.arange(ticks)
    amp = np.asarray(amplitude)
    phase = np.linspace(0.0, 1.0, amp.size)
    xs = 50 + amp * np.sin(2 * np.pi * times[:, None] / period + phase) + rng.normal(0.0, noise, (ticks, amp.size))
    return times, xs


def bucket_means(bucket: float, times: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Each tick's bucket number on the clock ([n x bucket, (n + 1) x bucket)), the first one, and every bucket's
    mean per target, (buckets, targets), NaN for a bucket without a sample (np.bincount, in the samples' order)."""
    ids = np.floor(times / bucket).astype(np.int64)
    first = int(ids[0])
    seen = np.isfinite(xs)
    means = np.full((int(ids[-1]) - first + 1, xs.shape[1]), NAN)
    for j in range(xs.shape[1]):
        sums = np.bincount(ids - first, weights=np.where(seen[:, j], xs[:, j], 0.0), minlength=means.shape[0])
        counts = np.bincount(ids - first, weights=seen[:, j].astype(float), minlength=means.shape[0])
        means[counts > 0, j] = sums[counts > 0] / counts[counts > 0]
    return ids, first, means


def expected(window: Window, times: np.ndarray, xs: np.ndarray, k: int, j: int, means=None) -> dict[str, float]:
    """What the window should read at tick k for target j, worked out from the samples alone: the bucket means of
    the clock's buckets, the correlation (numpy) of the last period's closed buckets with the period's before (at
    least half a period of pairs), the level ratio over the last `level` buckets, the bucket one period before
    now + lead, and the headroom: numpy's percentile of |x_t - x_t-1| of the `changes` ticks before the current
    bucket began (when the window works it out)."""
    bucket = window.effective_bucket
    per = int(round(window.period / bucket))
    level = max(1, math.ceil(window.effective_level / bucket - 1e-9))
    changes = window.changes(DT)
    ids, first, table = means if means is not None else bucket_means(bucket, times, xs)
    x = xs[:, j]
    nb = int(ids[k])

    def mean(n: int) -> float:  # closed buckets only
        return float(table[n - first, j]) if first <= n < nb else NAN

    now = np.array([mean(n) for n in range(nb - per, nb)])
    then = np.array([mean(n) for n in range(nb - 2 * per, nb - per)])
    both = np.isfinite(now) & np.isfinite(then)
    corr = NAN
    if both.sum() >= max(3, (per + 1) // 2) and now[both].std() > 0 and then[both].std() > 0:
        corr = float(np.corrcoef(now[both], then[both])[0, 1])
    ln, lt = now[-level:], then[-level:]
    pairs = np.isfinite(ln) & np.isfinite(lt)
    ratio = NAN
    if pairs.any():
        ratio = ln[pairs].sum() / lt[pairs].sum() if lt[pairs].sum() > 0 else (1.0 if ln[pairs].sum() == 0 else NAN)
    season = mean(int(math.floor((times[k] + window.effective_lead) / bucket)) - per)
    room = 0.0
    k0 = int(np.searchsorted(ids, nb))  # the tick that opened this bucket
    if changes:
        kept = np.array([abs(x[i] - x[i - 1]) for i in range(max(1, k0 - changes), k0)])
        kept = kept[np.isfinite(kept)]
        room = float(np.percentile(kept, window.headroom_q)) if kept.size else 0.0
    asks = corr >= window.effective_min_correlation and math.isfinite(season) and math.isfinite(ratio)
    recent = ln[np.isfinite(ln)]
    if asks:
        value = max(season * ratio + room, 0.0)
    elif recent.size:
        value = float(recent.mean())
    else:  # no closed bucket yet: this one's samples so far
        value = float(np.nanmean(x[k0 : k + 1]))
    if not math.isfinite(x[k]):
        value = NAN
    return {
        "value": value,
        "correlation": corr,
        "level_ratio": ratio,
        "season": season,
        "headroom": room,
        "no_opinion": math.isfinite(x[k]) and not asks,
    }


def check_ticks(window: Window, run: Run, ticks) -> None:
    """The window's readings at `ticks` are what `expected` works out from the samples fed."""
    means = bucket_means(window.effective_bucket, run.times, run.xs)
    for k in ticks:
        for j in range(run.xs.shape[1]):
            want = expected(window, run.times, run.xs, k, j, means)
            got = {"value": run.value[k, j], **{name: run.parts[name][k, j] for name in PARTS}}
            assert got["no_opinion"] == want.pop("no_opinion"), (k, j)
            if not got["no_opinion"]:
                for name in ("value", "season", "level_ratio", "headroom"):
                    np.testing.assert_allclose(got[name], want[name], rtol=1e-9, err_msg=f"{name} at tick {k}")
            else:
                np.testing.assert_allclose(got["value"], want["value"], rtol=1e-9, err_msg=f"tick {k}")
            np.testing.assert_allclose(
                got["correlation"], want["correlation"], rtol=1e-9, atol=1e-12, err_msg=f"correlation at tick {k}"
            )


# ---------------------------------------------------------------------------------------------- a daily pattern


@pytest.fixture(scope="module")
def daily() -> Run:
    """Two days and four hours of a daily cycle at 15 s for three targets; the third's third day is 10 % busier."""
    times, xs = pattern(DAY, int((2 * DAY + 4 * HOUR) / DT))
    xs[times >= T0 + 2 * DAY, 2] *= 1.1
    return feed(DAILY, times, xs)


def test_after_two_periods_the_forecast_is_the_bucket_a_period_ago_times_the_level_ratio(daily):
    # the last four hours, tick by tick: 14:00 reads yesterday's 14:00-14:05 bucket (lead 90 s) x today's level
    last = range(len(daily.times) - int(4 * HOUR / DT), len(daily.times))
    check_ticks(DAILY, daily, last)
    assert not daily.parts["no_opinion"][last.start :].any()
    assert (daily.parts["correlation"][last.start :] >= 0.9).all()


def test_a_level_ten_percent_above_the_period_before_reads_a_ratio_of_1_1(daily):
    # at 03:00 on the third day the last 30 minutes of target 2 run 10 % above the same 30 minutes a day before
    k = int((2 * DAY + 3 * HOUR) / DT)
    ratio = daily.parts["level_ratio"][k]
    assert ratio[2] == pytest.approx(1.1, abs=0.02)
    assert ratio[0] == pytest.approx(1.0, abs=0.02) and ratio[1] == pytest.approx(1.0, abs=0.02)
    # and the forecast scales with it: yesterday's bucket x 1.1
    assert daily.value[k, 2] == pytest.approx(daily.parts["season"][k, 2] * ratio[2], rel=1e-12)


def test_before_two_periods_it_has_no_opinion_and_reads_the_recent_level(daily):
    first_day = int(1.25 * DAY / DT)
    assert daily.parts["no_opinion"][:first_day].all()
    assert np.isnan(daily.parts["correlation"][:first_day]).all()
    # the first bucket reads its own samples so far; later ticks the mean of the last 30 minutes' buckets
    check_ticks(DAILY, daily, [0, 1, 19, 20, 21, 100, 1000, first_day - 1])
    assert daily.value[1, 0] == pytest.approx(daily.xs[:2, 0].mean())
    # it starts asking once half a period of buckets pair with the period before (1.5 periods from a fresh
    # start), and by two periods at the latest
    asks = np.flatnonzero(~daily.parts["no_opinion"][:, 0])
    first_ask = daily.times[asks[0]] - T0
    assert first_ask >= 1.5 * DAY and first_ask <= 2 * DAY


def test_a_seasonal_window_needs_the_time_of_its_step():
    sm = Smoother.compile(DAILY, DT)
    with pytest.raises(ValueError, match="pass now="):
        sm.step(sm.empty(1), np.array([50.0]))


# ---------------------------------------------------------------------------------------------- no pattern


def test_white_noise_has_no_correlation_at_the_period_so_no_opinion():
    rng = np.random.default_rng(7)
    ticks = int(3 * HOUR / DT)
    times, xs = T0 + DT * np.arange(ticks), rng.normal(50.0, 10.0, (ticks, 3))
    run = feed(HOURLY, times, xs)
    late = slice(int(2 * HOUR / DT), None)
    corr = run.parts["correlation"][late]
    assert np.isfinite(corr).all() and (corr < 0.5).all()
    assert run.parts["no_opinion"][late].all()
    check_ticks(HOURLY, run, range(late.start, ticks, 37))  # reading the recent level
    # the same noise with a floor of -1: the correlation is the only thing that kept it silent
    anything = feed(HOURLY.model_copy(update={"min_correlation": -1.0}), times, xs)
    assert not anything.parts["no_opinion"][late].any()


# ---------------------------------------------------------------------------------------------- headroom


def test_the_headroom_is_numpys_percentile_of_the_tick_to_tick_changes():
    window = HOURLY.model_copy(update={"headroom_q": 90.0})
    assert window.changes(DT) == 40  # 10 minutes at 15 s
    times, xs = pattern(HOUR, int(2.5 * HOUR / DT), noise=4.0, seed=3)
    run = feed(window, times, xs)
    late = range(int(2 * HOUR / DT), len(times))
    check_ticks(window, run, late)
    room = run.parts["headroom"][late.start :]
    assert (room > 0).all()
    # asked, the value is the forecast plus that headroom
    np.testing.assert_allclose(
        run.value[late.start :],
        run.parts["season"][late.start :] * run.parts["level_ratio"][late.start :] + room,
        rtol=1e-12,
    )
    # one bucket's headroom by hand: the 40 changes before 02:10 opened its bucket
    k0 = int((2 * HOUR + 600) / DT)
    by_hand = np.percentile(np.abs(np.diff(xs[k0 - 41 : k0, 1])), 90)
    assert run.parts["headroom"][k0 + 3, 1] == pytest.approx(by_hand, rel=1e-12)


# ---------------------------------------------------------------------------------------------- gaps and clocks


def test_a_missing_sample_is_no_data_for_its_target_only():
    times, xs = pattern(HOUR, int(2.5 * HOUR / DT))
    gap = int(2.2 * HOUR / DT)
    holed = xs.copy()
    holed[gap, 1] = NAN
    whole, run = feed(HOURLY, times, xs), feed(HOURLY, times, holed)
    assert math.isnan(run.value[gap, 1])
    assert not run.parts["no_opinion"][gap, 1]  # no data is not "no opinion": it is missing
    # the other targets never notice, at that tick or after
    np.testing.assert_array_equal(run.value[:, [0, 2]], whole.value[:, [0, 2]])
    # the next tick its target asks again, its bucket the mean of the samples it did get
    assert not run.parts["no_opinion"][gap + 1, 1] and math.isfinite(run.value[gap + 1, 1])
    check_ticks(HOURLY, run, range(gap - 2, len(times), 11))


def test_a_clock_that_goes_back_empties_the_buckets_until_the_history_rebuilds():
    times, xs = pattern(HOUR, int(2.5 * HOUR / DT), noise=0.0)
    before = feed(HOURLY, times, xs)
    assert not before.parts["no_opinion"][-1].any()
    # t+2h30: the clock is set back an hour and ticks on from there for two hours, the load still following it
    back, again = pattern(HOUR, int(2 * HOUR / DT), noise=0.0)
    back += times[-1] - HOUR - T0
    after = feed(HOURLY, back, again, state=before.state)
    silent, corr = after.parts["no_opinion"], after.parts["correlation"]
    # no bucket lines up with the clock any more: the first tick reads its own sample, and there is no
    # opinion and no correlation for well over a period
    assert after.value[0].tolist() == again[0].tolist()
    rebuilt = int(1.25 * HOUR / DT)
    assert silent[:rebuilt].all() and np.isnan(corr[:rebuilt]).all()
    # two periods of the new clock later it has its pattern again
    assert not silent[-1].any() and (corr[-1] > 0.9).all()


# ---------------------------------------------------------------------------------------------- through decide()


def seasonal_metric(kind: str = "utilization", **window) -> dict:
    w = {"type": "seasonal", "period": "1h", "bucket": "1m", "level": "10m", **window}
    return {"name": "daily", "kind": kind, "target": 70 if kind == "utilization" else 100, "window": w}


@pytest.mark.parametrize("algorithm", ["scaler", "hpa"])
def test_without_an_opinion_a_seasonal_metric_neither_holds_nor_blocks_the_others(algorithm):
    params = params_of(make_policy(algorithm=algorithm, metrics=[CPU, seasonal_metric()]))
    state = initial_state(params, np.array([4.0, 4.0]), T0)
    # t+15: no history at all. cpu 100 % asks ceil(4 x 100 / 70) = 6; cpu 10 % asks ceil(4 x 10 / 70) = 1
    d = decide(params, state, np.array([[100.0, 10.0], [60.0, 60.0]]), current=np.array([4.0, 4.0]), now=T0 + 15)
    assert d.desired.tolist() == [6, 1]
    assert d.steps.no_opinion[1].all() and np.isnan(d.proposals[1]).all()
    assert d.smoothed[1].tolist() == [60.0, 60.0]  # it has data: its value is the level it read
    assert not Reason(int(d.reasons[1])) & Reason.NO_DATA and d.reasons[1] & Reason.METRIC_DOWN
    # the same seasonal metric with no sample is missing data: no scale-down (the scale-up still goes)
    d = decide(params, state, np.array([[100.0, 10.0], [NAN, NAN]]), current=np.array([4.0, 4.0]), now=T0 + 15)
    assert d.desired.tolist() == [6, 4]
    assert d.reasons[1] & Reason.NO_DATA and not d.steps.no_opinion[1].any()
    # and no opinion does not stand in for a missing cpu: hold, for want of data
    d = decide(params, state, np.array([[NAN, NAN], [60.0, 60.0]]), current=np.array([4.0, 4.0]), now=T0 + 15)
    assert d.desired.tolist() == [4, 4]
    assert all(Reason(int(r)) & Reason.NO_DATA for r in d.reasons)


@pytest.mark.parametrize("kind", ["gauge", "utilization"])
def test_decide_and_the_smoother_agree_tick_for_tick(kind):
    """decide()'s compiled tick and Smoother.step run the same window: the same values and numbers every tick.
    A utilization window keeps load (value x ready replicas) and reads it per replica serving now, so the
    Smoother is fed value x ready and its values divided by the ready count."""
    policy = make_policy(metrics=[CPU, seasonal_metric(kind, headroom_q=95)])
    params = params_of(policy)
    times, xs = pattern(HOUR, int(2.5 * HOUR / DT), seed=5)
    xs[int(1.8 * HOUR / DT), 0] = NAN
    rng = np.random.default_rng(9)
    ready = rng.integers(1, 6, xs.shape).astype(float) if kind == "utilization" else np.ones(xs.shape)
    current = np.full(3, 5.0)
    state = initial_state(params, current, T0 - DT)
    sm = Smoother.compile(policy.metrics[1].window, DT)
    st = sm.empty(3)
    asked = 0
    for k, now in enumerate(times):
        obs = np.vstack([np.full(3, 60.0), xs[k]])
        d = decide(params, state, obs, current=current, ready=ready[k], now=float(now))
        state = d.state
        v, st = sm.step(st, xs[k] * ready[k], now=float(now))
        np.testing.assert_allclose(d.smoothed[1], v / ready[k], rtol=1e-12, err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.steps.no_opinion[1], st.seasonal["no_opinion"], err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.steps.correlation[1], st.seasonal["correlation"], err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.steps.level_ratio[1], st.seasonal["level_ratio"], err_msg=f"tick {k}")
        np.testing.assert_allclose(d.steps.season[1], st.seasonal["season"] / ready[k], rtol=1e-12)
        np.testing.assert_allclose(d.steps.headroom[1], st.seasonal["headroom"] / ready[k], rtol=1e-12)
        # the other window's row has no seasonal numbers
        assert np.isnan(d.steps.correlation[0]).all() and not d.steps.no_opinion[0].any()
        asked += int((~d.steps.no_opinion[1] & np.isfinite(d.smoothed[1])).sum())
    assert asked > 3 * int(0.5 * HOUR / DT)  # it did ask, for every target, over the last stretch


# ---------------------------------------------------------------------------------------------- explain

SEASON = re.compile(
    r"daily [0-9.]+ \(seasonal ([0-9.e+-]+) a period ago x level ([0-9.e+-]+) \+ headroom "
    r"([0-9.e+-]+) = ([0-9.e+-]+); correlation ([0-9.-]+) >= 0\.5\)"
)


def explained(policy, ticks: int, xs: np.ndarray):
    """decide() at each tick of `xs` (seasonal metric) with cpu at 60 % on 4 replicas: each tick's (d, lines)."""
    params = params_of(policy)
    current = np.full(xs.shape[1], 4.0)
    state = initial_state(params, current, T0 - DT)
    for k in range(ticks):
        obs = np.vstack([np.full(xs.shape[1], 60.0), xs[k]])
        d = decide(params, state, obs, current=current, now=T0 + DT * k)
        state = d.state
        yield d, [explain(policy, Values.of(d.steps, d.observed, d.current, j)) for j in range(xs.shape[1])]


def test_explain_tells_the_forecast_with_numbers_that_multiply_out():
    policy = make_policy(metrics=[CPU, seasonal_metric(headroom_q=95)])
    times, xs = pattern(HOUR, int(2.5 * HOUR / DT), seed=11)
    told = 0
    for d, lines in explained(policy, len(times), xs):
        for j, line in enumerate(lines):
            if d.steps.no_opinion[1, j]:
                assert "no opinion" in line and "asks nothing" in line, line
                continue
            m = SEASON.search(line)
            assert m, line
            season, ratio, room, smoothed, corr = (float(g) for g in m.groups())
            # four significant digits each: the product and sum hold to about a part in a thousand
            assert season * ratio + room == pytest.approx(smoothed, rel=2e-3), line
            assert smoothed == pytest.approx(d.smoothed[1, j], rel=1e-3)
            # printed rounded down, so the comparison beside it reads true
            assert 0 <= d.steps.correlation[1, j] - corr < 0.01 + 1e-9 and corr >= 0.5
            # and the ask it made is on the line, from that smoothed value
            assert f"ceil(4 x {smoothed:g} / 70)" in line, line
            told += 1
    assert told > 3 * int(0.5 * HOUR / DT)


def test_explain_says_why_a_seasonal_metric_has_no_opinion():
    policy = make_policy(metrics=[CPU, seasonal_metric()])
    times, xs = pattern(HOUR, 10)
    _, lines = list(explained(policy, 10, xs))[-1]
    assert "(level " in lines[0]
    assert (
        "no opinion: no correlation at the period yet (it needs about 1.5 periods of history)): asks nothing"
        in lines[0]
    )
    # white noise over three periods: a correlation, too low to ask on
    rng = np.random.default_rng(7)
    noise = rng.normal(50.0, 10.0, (int(3 * HOUR / DT), 1))
    _, lines = list(explained(policy, len(noise), noise))[-1]
    m = re.search(r"no opinion: correlation (-?[0-9.]+) < 0\.5\): asks nothing", lines[0])
    assert m and float(m.group(1)) < 0.5, lines[0]


def test_explain_says_which_number_a_silent_seasonal_metric_lacks():
    """The pattern is there (correlation ~1), yet it asks nothing: target 0 lost the bucket it would read, target
    1 was idle a period ago where it is busy now, so there is no level to scale by."""
    policy = make_policy(metrics=[CPU, seasonal_metric("gauge", level="5m")])
    t = DT * np.arange(int(2.2 * HOUR / DT))
    phase = (t % HOUR) / HOUR
    busy = 100 * np.sin(np.pi * np.clip(phase - 0.3, 0.0, None) / 0.7)  # idle the first 18 minutes of each hour
    lost, woken = busy.copy(), busy.copy()
    lost[(t >= HOUR + 600) & (t < HOUR + 660)] = NAN  # 01:10-01:11, what 02:08:30 reads 90 s ahead
    woken[(t >= 2 * HOUR) & (phase < 0.3)] = 50.0  # busy from 02:00, where it idled an hour before
    at = {int((2 * HOUR + 390) / DT): "02:06:30", int((2 * HOUR + 510) / DT): "02:08:30"}
    seen = {}
    for k, (d, lines) in enumerate(explained(policy, len(t), np.column_stack([lost, woken]))):
        if k in at:
            seen[at[k]] = (d, lines)
    d, lines = seen["02:06:30"]
    assert not d.steps.no_opinion[1, 0] and "seasonal " in lines[0]  # 01:08 is there to read
    assert d.steps.no_opinion[1, 1] and np.isnan(d.steps.level_ratio[1, 1]) and d.steps.correlation[1, 1] > 0.9
    assert "no opinion: no level a period ago to scale by): asks nothing" in lines[1], lines[1]
    d, lines = seen["02:08:30"]
    assert d.steps.no_opinion[1, 0] and np.isnan(d.steps.season[1, 0]) and d.steps.correlation[1, 0] > 0.9
    assert "no opinion: no bucket a period ago to read): asks nothing" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("corr", "floor", "shown"),
    [(0.6996, 0.7, "0.69"), (0.7, 0.7, "0.70"), (0.29, 0.29, "0.29"), (-0.123, 0.5, "-0.13"), (0.7549, 0.755, "0.754"),
     (0.755, 0.755, "0.755")],
)
def test_the_correlation_is_printed_rounded_down_so_its_comparison_reads_true(corr, floor, shown):
    assert explain_module._down(corr, floor) == shown
    assert (float(shown) >= floor) == (corr >= floor)
