"""A max window that reads further back while the metric is noisy (noisy_length): the policy's checks, the window
on its own (Smoother.step) against a numpy reading of its two exponentially weighted means, decide()'s compiled
tick agreeing with it, a utilization window measuring its load, backfill, the saved state, and --explain."""

from __future__ import annotations

import io
import math
import re
from typing import NamedTuple

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from scaler.cli.main import app
from scaler.decision import backfill, statecodec
from scaler.decision import explain as explain_module
from scaler.decision.backfill import Span, spans
from scaler.decision.decide import decide
from scaler.decision.params import params_of, window_params
from scaler.decision.state import initial_state
from scaler.decision.steps import Smoother
from scaler.policy.load import load_policy
from scaler.policy.model import Window
from tests.conftest import make_policy

NAN = math.nan
DT = 15.0
NOW = 1_700_006_400.0
NOISY = {"type": "max", "length": "30s", "noisy_length": "5m", "noisy_above": 0.1}
WINDOW = Window.model_validate(NOISY)
CPU = {"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50, "window": {"type": "last"}}


def busy(kind: str = "utilization", window: dict = NOISY, name: str = "busy") -> dict:
    return {"name": name, "kind": kind, "target": 70 if kind == "utilization" else 100, "window": window}


# ---------------------------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(("window", "message"), [
    ({"type": "mean", "noisy_length": "5m"}, "noisy_length applies only to type: max"),
    ({"type": "ewma", "noise_span": "10m"}, "noise_span applies only to type: max"),
    ({"type": "percentile", "noisy_length": "5m", "noisy_above": 0.2}, "noisy_length, noisy_above apply only to"),
    ({"type": "max", "noisy_above": 0.2}, "noisy_above needs noisy_length"),
    ({"type": "max", "noise_span": "10m"}, "noise_span needs noisy_length"),
    ({"type": "max", "length": "5m", "noisy_length": "5m"}, "noisy_length (5m) must be longer than length (5m)"),
    ({"type": "max", "length": 30, "noisy_length": "25h"}, "must be at most 1d"),
    ({**NOISY, "noisy_above": 0}, "greater than 0"),
    ({**NOISY, "noisy_above": 10.5}, "less than or equal to 10"),
    ({**NOISY, "noise_span": 0}, "noise_span must be greater than 0"),
])
def test_a_misplaced_or_misfit_noise_setting_is_refused(window, message):
    with pytest.raises(ValidationError) as e:
        Window.model_validate(window)
    assert message in str(e.value)


def test_a_noisy_max_keeps_its_long_span_and_reads_its_short_one_while_quiet():
    assert WINDOW.slots(DT) == 20 and Window(type="max", length="30s").slots(DT) == 2
    w = window_params(WINDOW, DT)
    assert (w.slots, w.short, w.noise_alpha, w.noise_above) == (20, 2, DT / 1800, 0.1)
    assert Window.model_validate({**NOISY, "noisy_above": 10}).effective_noisy_above == 10
    # the defaults reach the compiled window; a span shorter than a tick weighs each tick wholly
    plain = Window(type="max", length="30s", noisy_length="5m")
    assert window_params(plain, DT).noise_above == plain.effective_noisy_above
    assert window_params(Window(type="max", length=30, noisy_length="5m", noise_span=10), DT).noise_alpha == 1.0
    assert window_params(Window(type="max", length="5m"), DT)[-2:] == (0.0, 0.0)  # no noise rule


def test_a_policy_whose_noisy_span_is_too_many_samples_is_refused_naming_noisy_length():
    window = {"type": "max", "length": "30s", "noisy_length": "24h"}
    with pytest.raises(ValidationError) as e:
        make_policy(interval=1, metrics=[{**CPU, "window": window}])
    assert "metrics[0].window.noisy_length: 1d at an interval of 1s is 86,400 samples" in str(e.value)
    make_policy(interval=10, metrics=[{**CPU, "window": window}])  # 8,640 samples: fine


# ---------------------------------------------------------------------------------------------- on its own


class Run(NamedTuple):
    """A window's every tick."""

    value: np.ndarray  # (ticks, targets)
    noise: np.ndarray  # (ticks, targets)
    sums: np.ndarray  # (ticks, 2, targets)


def feed(window: Window, xs: np.ndarray) -> Run:
    """Step `window` through samples xs (ticks, targets) at 15 s, from empty."""
    sm = Smoother.compile(window, DT)
    st = sm.empty(xs.shape[1])
    values, noise, sums = [], [], []
    for x in xs:
        v, st = sm.step(st, x)
        values.append(v.copy())
        noise.append(st.noise.copy())
        sums.append(st.sums.copy())
    return Run(np.array(values), np.array(noise), np.array(sums))


def by_hand(window: Window, xs: np.ndarray) -> Run:
    """What the window should read, from the samples alone: the mean level and mean |x_t - x_t-1| (both present)
    as EWMAs started by their first term, their ratio, and the max of the long or the short span by it."""
    alpha, above = min(1.0, DT / window.effective_noise_span), window.effective_noisy_above
    long, short = window.slots(DT), math.ceil(window.length / DT)
    change, level = np.full(xs.shape[1], NAN), np.full(xs.shape[1], NAN)
    values, noise, sums = [], [], []
    for k, x in enumerate(xs):
        level = np.where(np.isnan(x), level, np.where(np.isnan(level), x, level + alpha * (x - level)))
        d = np.abs(x - (xs[k - 1] if k else NAN))
        change = np.where(np.isnan(d), change, np.where(np.isnan(change), d, change + alpha * (d - change)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(level > 0, change / level, np.where(change == 0, 0.0, math.inf))
        ratio[np.isnan(change) | np.isnan(level)] = NAN
        value = np.full(xs.shape[1], NAN)
        for j, span in enumerate(np.where(ratio > above, long, short)):
            seen = xs[max(0, k - span + 1) : k + 1, j]
            if np.isfinite(x[j]):
                value[j] = seen[np.isfinite(seen)].max()
        values.append(value)
        noise.append(ratio)
        sums.append(np.stack([change, level]))
    return Run(np.array(values), np.array(noise), np.array(sums))


def test_a_held_signal_is_quiet_and_reads_the_max_of_its_short_span():
    """A 5-minute sample held at 15 s changes once in 20 ticks: never noisy, a drop reads within two ticks."""
    rng = np.random.default_rng(1)
    xs = np.repeat(np.append(rng.uniform(40, 60, 12), 20.0), 20)[:, None]
    run = feed(WINDOW, xs)
    assert np.isnan(run.noise[0]).all() and (run.noise[1:] <= 0.1).all()
    drop = 240
    assert run.value[drop, 0] == xs[drop - 1, 0] and run.value[drop + 1 :, 0].tolist() == [20.0] * 19
    np.testing.assert_array_equal(run.value[1:, 0], np.maximum(xs[1:, 0], xs[:-1, 0]))  # max of the last 30 s


def test_a_signal_that_swings_every_tick_is_noisy_and_holds_its_peak_for_the_long_span():
    xs = np.concatenate([np.tile([10.0, 2.0], 30), np.tile([5.0, 1.0], 20)])[:, None]  # 10, 2, ... 5, 1, ...
    run = feed(WINDOW, xs)
    assert (run.noise[1:] > 0.1).all()
    # the last 10 is tick 58: read until 5 minutes have passed, then the new peak
    assert (run.value[60:78, 0] == 10.0).all() and (run.value[78:, 0] == 5.0).all()
    # never noisy (a threshold of 10 x the level), the same samples read the last 30 s only
    quiet = feed(Window.model_validate({**NOISY, "noisy_above": 10}), xs)
    assert (quiet.value[60:, 0] == 5.0).all()
    np.testing.assert_array_equal(quiet.noise, run.noise)


def test_the_means_and_the_value_are_a_numpy_reading_of_the_samples():
    rng = np.random.default_rng(4)
    xs = rng.gamma(2.0, 20.0, (120, 3)) * np.array([1.0, 0.05, 1.0])  # target 1 sits near 0
    xs[:60, 2] = np.repeat(rng.uniform(30, 50, 3), 20)  # quiet, then noisy
    xs[[17, 40, 41, 90], 0] = NAN
    xs[0, 1] = NAN
    for window in (WINDOW, Window.model_validate({**NOISY, "noise_span": "2m", "noisy_above": 0.6})):
        got, want = feed(window, xs), by_hand(window, xs)
        for name in ("sums", "noise", "value"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, err_msg=name)
    assert (got.noise[70:, 0] > 0.6).all() and (got.noise[30:60, 2] < 0.6).all()  # both spans were read


def test_a_missing_sample_reads_no_data_and_leaves_both_means():
    xs = np.column_stack([np.tile([10.0, 2.0], 20), np.linspace(10, 30, 40)])
    xs[25, 0] = NAN
    run = feed(WINDOW, xs)
    assert np.isnan(run.value[25, 0]) and run.value[25, 1] == xs[25, 1]
    np.testing.assert_array_equal(run.sums[25][:, 0], run.sums[24][:, 0])
    assert run.noise[25, 0] == run.noise[24, 0]
    # the next tick: a level, but no change (its previous sample is missing); the long span skips the gap
    assert run.sums[26][0, 0] == run.sums[24][0, 0] and run.sums[26][1, 0] != run.sums[24][1, 0]
    assert run.value[26, 0] == 10.0


def test_noisy_above_moves_the_switch_point():
    """11, 9, 11, 9 ... changes by 20 % of its level: noisy over 10 %, quiet under 50 %. A spike of 30 is read
    for 5 minutes by the first, for 30 s by the second."""
    xs = np.tile([11.0, 9.0], 40)[:, None]
    xs[40] = 30.0
    low, high = feed(WINDOW, xs), feed(Window.model_validate({**NOISY, "noisy_above": 0.5}), xs)
    np.testing.assert_array_equal(low.noise, high.noise)
    assert (low.noise[1:] > 0.1).all() and (low.noise[1:] < 0.5).all()
    assert (low.value[40:60, 0] == 30).all() and (low.value[60:, 0] == 11).all()
    assert (high.value[40:42, 0] == 30).all() and (high.value[42:, 0] == 11).all()


# ---------------------------------------------------------------------------------------------- through decide()


def test_decide_and_the_smoother_agree_tick_for_tick():
    """A utilization window keeps load (value x ready replicas) and reads it per replica serving now, so the
    Smoother is fed value x ready and its values divided by the ready count; the other metric has no noise."""
    params, rng, ticks = params_of(make_policy(metrics=[CPU, busy()])), np.random.default_rng(5), 160
    xs = np.column_stack([np.repeat(rng.uniform(30, 60, 8), 20), np.tile([80.0, 20.0], 80),
                          rng.uniform(10, 90, ticks)])
    xs[[30, 31, 100], 2] = NAN
    ready = np.column_stack([np.full(ticks, 3.0), rng.integers(1, 6, (ticks, 2))]).astype(float)
    current, sm = np.full(3, 5.0), Smoother.compile(WINDOW, DT)
    state, st, noisy = initial_state(params, current, NOW - DT), sm.empty(3), np.zeros((ticks, 3), dtype=bool)
    for k in range(ticks):
        d = decide(params, state, np.vstack([np.full(3, 60.0), xs[k]]), current=current, ready=ready[k],
                   now=NOW + DT * k)
        state = d.state
        v, st = sm.step(st, xs[k] * ready[k])
        np.testing.assert_allclose(d.smoothed[1], v / ready[k], rtol=1e-12, err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.steps.noise[1], st.noise, err_msg=f"tick {k}")
        np.testing.assert_array_equal(state.sums[1], st.sums, err_msg=f"tick {k}")
        assert np.isnan(d.steps.noise[0]).all()
        noisy[k] = st.noise > 0.1
    assert not noisy[1:, 0].any() and noisy[1:, 1].all()  # the held target quiet, the swinging one noisy


def test_more_replicas_for_the_same_load_is_not_noise():
    """240 % of load over 4, 6, 3 and 8 ready replicas reads 60 %, 40 %, 80 %, 30 %: a utilization window sees a
    constant load (no noise, the load over the replicas now); a gauge of the same numbers swings."""
    params = params_of(make_policy(metrics=[busy(), busy("gauge", name="gauge")]))
    ready = np.tile([4.0, 6.0, 3.0, 8.0], 15)
    state = initial_state(params, np.array([4.0]), NOW - DT)
    for k, r in enumerate(ready):
        d = decide(params, state, np.full((2, 1), 240.0 / r), current=np.array([r]), now=NOW + DT * k)
        state = d.state
        if k:
            assert d.steps.noise[0, 0] == 0.0 and d.steps.noise[1, 0] > 0.1
            assert d.smoothed[0, 0] == pytest.approx(240.0 / r, rel=1e-12)
    assert d.smoothed[1, 0] == 80.0  # the gauge's noisy span: its highest reading


# ---------------------------------------------------------------------------------------------- backfill


@pytest.mark.parametrize(("span", "samples"), [(None, 826), ("1m", 25), ("15s", 20)])
def test_a_noisy_max_asks_for_its_ring_or_the_ticks_its_means_still_weigh(span, samples):
    # 30 minutes at 15 s: alpha 1/120, 826 ticks leave 0.1 %; 1 minute: alpha 1/4, 25; 15 s: alpha 1, its ring
    window = {**NOISY} if span is None else {**NOISY, "noise_span": span}
    params = params_of(make_policy(metrics=[busy(window=window), CPU]))
    assert spans(params, NOW) == [Span(NOW - samples * DT, NOW - DT, DT), None]


def history(n: int) -> np.ndarray:
    """(n, 2): a held level for most of it, then swings; the second target with gaps."""
    rng = np.random.default_rng(8)
    xs = np.column_stack([np.repeat(rng.uniform(30, 60, n // 20 + 1), 20)[:n], rng.uniform(20, 80, n)])
    xs[n - 40 :, 0] = np.tile([70.0, 10.0], 20)
    xs[::7, 1] = NAN
    return xs


def test_a_filled_noisy_max_reads_as_if_its_history_had_been_ticked():
    params = params_of(make_policy(metrics=[busy()]))
    (span,) = spans(params, NOW)
    times, xs = span.start + DT * np.arange(span.samples), history(span.samples)
    ready, x = np.array([2.0, 3.0]), np.array([[50.0, 40.0]])
    state = initial_state(params, ready, times[0] - DT)
    for now, row in zip(times, xs, strict=True):
        state = decide(params, state, row[None, :], current=ready, now=now).state
    ticked = decide(params, state, x, current=ready, now=NOW)
    filled = decide(params, backfill.fill(params, initial_state(params, ready, NOW), 0, times, xs, ready=ready,
                                          now=NOW), x, current=ready, now=NOW)
    assert np.isfinite(ticked.steps.noise).all() and ticked.smoothed[0, 0] == 70.0  # noisy: the 5-minute max
    np.testing.assert_array_equal(filled.state.sums[0], ticked.state.sums[0])
    np.testing.assert_array_equal(filled.steps.noise, ticked.steps.noise)
    np.testing.assert_array_equal(filled.smoothed, ticked.smoothed)
    fresh = decide(params, initial_state(params, ready, NOW), x, current=ready, now=NOW)
    assert np.isnan(fresh.steps.noise).all() and fresh.smoothed[0, 0] == 50.0


def test_a_saved_noisy_max_moves_its_means_on_over_the_history():
    params = params_of(make_policy(metrics=[busy()]))
    ready, xs = np.array([2.0, 3.0]), history(40)
    xs[7] = [5.0, 90.0]  # the first sample of the history far from the last one saved
    state, saved = initial_state(params, ready, NOW - 41 * DT), None
    for k, row in enumerate(xs):
        state = decide(params, state, row[None, :], current=ready, now=NOW - (40 - k) * DT).state
        saved = state if k == 6 else saved
    filled = backfill.fill(params, saved, 0, NOW - DT * np.arange(33, 0, -1), xs[7:], ready=ready, now=NOW)
    np.testing.assert_allclose(filled.sums[0], state.sums[0], rtol=1e-12)


def test_a_one_slot_noisy_max_is_filled_too():
    """30 s / 45 s at a 60 s interval keeps one slot: its means still reach back, so it still asks for history."""
    params = params_of(make_policy(interval=60, metrics=[busy(window={**NOISY, "noisy_length": "45s"})]))
    assert int(params.slots[0]) == 1
    (span,) = spans(params, NOW)
    assert span is not None and span.samples > 1


# ---------------------------------------------------------------------------------------------- saved state


def test_a_noisy_max_made_plain_keeps_its_saved_ring():
    """The means saved with a noisy max are ignored by the same window made plain, not a reason to start over."""
    noisy = make_policy(metrics=[busy(window={**NOISY, "length": "5m", "noisy_length": "10m"})])
    plain = make_policy(metrics=[busy(window={"type": "max", "length": "10m"})])
    params, current = params_of(noisy), np.array([3.0, 4.0])
    state = initial_state(params, current, NOW - 61 * DT)
    for k, row in enumerate(history(60)):
        state = decide(params, state, row[None, :], current=current, now=NOW - (60 - k) * DT).state
    back, why = statecodec.decode(statecodec.encode(noisy, state, ["a", "b"]), plain, targets=["a", "b"],
                                  current=current, now=NOW)
    assert why == ""
    np.testing.assert_array_equal(back.rings, state.rings)


def test_the_saved_state_keeps_a_noisy_maxs_means_exactly():
    policy = make_policy(metrics=[CPU, busy()])
    params = params_of(policy)
    current, xs = np.array([3.0, 4.0]), history(60)
    state = initial_state(params, current, NOW - 61 * DT)
    for k, row in enumerate(xs):
        state = decide(params, state, np.vstack([[60.0, 60.0], row]), current=current, now=NOW - (60 - k) * DT).state
    assert np.isfinite(state.sums[1]).all()
    blob = statecodec.encode(policy, state, ["a", "b"])
    with np.load(io.BytesIO(blob)) as npz:
        assert "smooth1_sums" in npz.files and "smooth0_sums" not in npz.files
    back, why = statecodec.decode(blob, policy, targets=["a", "b"], current=current, now=NOW)
    assert why == ""
    np.testing.assert_array_equal(back.sums[1], state.sums[1])
    np.testing.assert_array_equal(back.rings, state.rings)
    # and the next tick reads the same after the restart: the same span, the same noise
    obs = np.array([[60.0, 60.0], [50.0, 40.0]])
    a, b = (decide(params, s, obs, current=current, now=NOW) for s in (state, back))
    np.testing.assert_array_equal(a.steps.noise, b.steps.noise)
    np.testing.assert_array_equal(a.smoothed, b.smoothed)


# ---------------------------------------------------------------------------------------------- explain


@pytest.mark.parametrize(("noise", "shown"), [
    (0.1000001, "10.1 % of the level > 10 %"), (np.nextafter(0.1, 1), "10.1 % of the level > 10 %"),
    (0.1, "10.0 % of the level <= 10 %"), (0.0999, "9.9 % of the level <= 10 %"),
    (0.118, "11.8 % of the level > 10 %"), (0.1171, "11.8 % of the level > 10 %"),
])
def test_the_share_is_rounded_away_from_the_threshold_so_its_comparison_reads_true(noise, shown):
    metric = make_policy(metrics=[busy()]).metrics[0]
    text = explain_module._noisy(metric, noise, 8.334)
    span = "5m" if noise > 0.1 else "30s"
    assert text == f" (max of the last {span}: changes average {shown}; smoothed 8.334)"
    assert "noise not measured yet" in explain_module._noisy(metric, NAN, 1.0)


NOISY_YAML = """\
name: n
target: {kind: dry-run, name: n}
replicas: {min: 1, max: 20}
interval: 15s
metrics:
  - name: cpu
    kind: utilization
    query: 'x'
    target: 70
    scale_up_above: 80
    scale_down_below: 68
    window: {type: max, length: 30s, noisy_length: 5m}
behavior:
  scale_down: {stabilization: 1m, policies: [{type: percent, value: 100, period: 15s}]}
"""
SHARE = re.compile(r"\(max of the last (\S+): changes average ([0-9.]+) % of the level (>|<=) ([0-9.]+) %;")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", re.M)


def test_explain_prints_a_share_that_agrees_with_its_comparison(tmp_path):
    """Two hours of a held 5-minute sample, then an hour swinging every tick: every line's share and comparison
    agree, and both the quiet and the noisy form are printed."""
    policy = tmp_path / "noisy.yaml"
    policy.write_text(NOISY_YAML)
    window = load_policy(policy).metrics[0].window
    rng = np.random.default_rng(3)
    rps = np.concatenate([np.repeat(rng.uniform(2, 4, 24), 20), np.tile([0.5, 5.0], 120)])
    data = tmp_path / "rps.csv"
    data.write_text("timestamp,rps\n" + "".join(f"{805766400 + 15 * k},{v:.4f}\n" for k, v in enumerate(rps)))
    res = CliRunner().invoke(app, ["simulate", str(policy), str(data), "--capacity", "2", "--explain",
                                   "--explain-all"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    # the console wraps long lines: one decision per time stamp, its spaces put back
    lines = [" ".join(part.split()) for part in STAMP.split(res.output)[1:]]
    assert len(lines) == len(rps)
    seen = set()
    for line in lines:
        m = SHARE.search(line)
        if m is None:
            assert "noise not measured yet" in line, line
            continue
        span, pct, op, above = m.group(1), float(m.group(2)), m.group(3), float(m.group(4))
        assert above == pytest.approx(window.effective_noisy_above * 100), line
        assert (pct > above) if op == ">" else (pct <= above), line
        assert span == ("5m" if op == ">" else "30s"), line
        seen.add(op)
    assert seen == {">", "<="}
    assert "noise not measured yet" in lines[0]
