"""Policies side by side: one Params whose columns carry each policy's targets, bands, stabilization windows and
cooldowns decides, tick after tick, exactly as each policy deciding alone."""

import numpy as np
import pytest

from scaler.decision.decide import decide
from scaler.decision.params import PER_COLUMN, params_of, side_by_side
from scaler.decision.state import initial_state
from scaler.policy.model import Policy
from tests.conftest import make_policy

T0 = 1.7e9
TARGETS = 3


def banded(target: float, up: float, down: float, *, up_stab: float = 0, down_stab: float = 0,
           up_cool: float = 0, down_cool: float = 0, panic: bool = True) -> Policy:
    """A CPU and a latency metric, windows of every kind that keeps a ring, panic, two rate limits."""
    return make_policy(
        metrics=[{"name": "cpu", "target": target, "scale_up_above": up, "scale_down_below": down,
                  "window": {"type": "mean", "length": 45}},
                 {"name": "cpu_trend", "target": target, "scale_up_above": up + 5, "scale_down_below": down,
                  "window": {"type": "trend", "length": 120}},
                 {"name": "p95", "kind": "latency", "target": 0.3, "window": {"type": "last"}}],
        behavior={"scale_up": {"stabilization": up_stab, "cooldown": up_cool, "policies": [
                      {"type": "pods", "value": 3, "period": 30}, {"type": "percent", "value": 50, "period": 60}]},
                  "scale_down": {"stabilization": down_stab, "cooldown": down_cool,
                                 "policies": [{"type": "pods", "value": 2, "period": 30}]}},
        panic={"threshold": 1.3, "window": 30, "hold": 45} if panic else None)


CANDIDATES = [banded(70, 80, 50), banded(60, 66, 55, down_stab=120, up_cool=30),
              banded(85, 90, 40, up_stab=45, down_stab=30, down_cool=90), banded(70, 80, 50, down_stab=600)]


def test_a_policy_has_one_column_that_every_target_reads():
    p = params_of(CANDIDATES[0])
    assert p.columns == 1
    assert p.target.shape == p.up.shape == p.down.shape == (3,)  # (metrics x 1,): one value per metric
    assert p.up_window.shape == p.down_window.shape == p.cooldown_up.shape == p.cooldown_down.shape == (1,)


def test_side_by_side_lays_each_policy_over_its_block_of_columns():
    a, b = params_of(CANDIDATES[0]), params_of(CANDIDATES[1])
    p = side_by_side([a, b], 2)
    assert p.columns == 4
    # metric by metric: cpu's row is [70, 70, 60, 60], then cpu_trend's, then p95's
    np.testing.assert_array_equal(p.target, [70, 70, 60, 60, 70, 70, 60, 60, 0.3, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(p.down_window, [0, 0, 120, 120])
    np.testing.assert_array_equal(p.cooldown_up, [0, 0, 30, 30])
    # the longest history is kept: 120 s at 15 s + 2 slots of margin
    assert p.history_slots == max(a.history_slots, b.history_slots) == 10
    assert side_by_side([a], 5) is a


@pytest.mark.parametrize("other, field", [
    (make_policy(interval=30), "interval"),
    (banded(70, 80, 50, panic=False), "has_panic"),
    (make_policy(replicas={"min": 2, "max": 20}), "min"),
], ids=["interval", "panic", "bounds"])
def test_only_the_per_column_settings_may_differ(other, field):
    base = make_policy() if field != "has_panic" else CANDIDATES[0]
    with pytest.raises(ValueError, match=f"in {field}: only {', '.join(PER_COLUMN)} may"):
        side_by_side([params_of(base), params_of(other)], 1)


def test_side_by_side_decides_as_each_policy_alone_tick_by_tick():
    """Four policies x 3 targets in one decide() per tick; each policy alone over the same 3 targets. Every
    output, every tick, to the bit, with writes that fail now and then and gaps in the metrics."""
    rng = np.random.default_rng(11)
    k, n = len(CANDIDATES), TARGETS
    alone = [params_of(c) for c in CANDIDATES]
    wide = side_by_side(alone, n)
    current = np.array([4.0, 9.0, 2.0])
    currents = [current.copy() for _ in CANDIDATES]
    states = [initial_state(p, current, T0) for p in alone]
    state = initial_state(wide, np.tile(current, k), T0)
    acted = 0
    for tick in range(1, 240):
        now = T0 + 15.0 * tick
        load = rng.gamma(2.0, 1.5, n) * (1 + np.sin(tick / 20.0))
        ready = [np.maximum(c - rng.integers(0, 2, n), 0) for c in currents]
        seen = []
        for r in ready:
            cpu = np.minimum(load / np.maximum(r, 1), 1.0) * 100
            o = np.vstack([cpu, cpu, 0.06 / np.maximum(1 - cpu / 100, 0.05)])
            o[:, rng.random(n) < 0.03] = np.nan
            seen.append(o)
        d = decide(wide, state, np.hstack(seen), current=np.concatenate(currents), ready=np.concatenate(ready),
                   now=now)
        written = np.where(rng.random(k * n) < 0.9, d.desired, np.nan)
        state = d.state.with_applied(now, np.concatenate(currents), written, reuse=True)
        for i, (p, s) in enumerate(zip(alone, states, strict=True)):
            cols = slice(i * n, (i + 1) * n)
            one = decide(p, s, seen[i], current=currents[i], ready=ready[i], now=now)
            for name in one.steps._fields:
                np.testing.assert_array_equal(getattr(d.steps, name)[..., cols], getattr(one.steps, name),
                                              err_msg=f"policy {i}, {name}, tick {tick}")
            states[i] = one.state.with_applied(now, currents[i], written[cols])
            acted += int(np.count_nonzero(np.nan_to_num(written[cols], nan=-1) != currents[i]))
            currents[i] = np.where(np.isnan(written[cols]), currents[i], written[cols])
    assert acted > 50  # the policies did scale, each its own way
    assert len({tuple(c) for c in currents}) > 1


def test_a_run_narrower_than_its_columns_is_refused():
    wide = side_by_side([params_of(c) for c in CANDIDATES[:2]], 2)  # 4 columns
    with pytest.raises(ValueError, match="columns"):
        decide(wide, initial_state(wide, np.ones(3), T0), np.full((3, 3), 50.0), current=np.ones(3), now=T0 + 15)
