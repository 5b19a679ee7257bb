"""Why a decision came out as it did, told with the numbers the decision itself used (never recomputed).

One line per target and tick, e.g. for web.yaml going 7 -> 8:

    7 -> 8 [METRIC_UP+SCALE_UP_LIMIT]: cpu 76.2 (smoothed 79.1) > 78: ceil(7 x 79.1 / 70) = ceil(7.91) = 8;
    cpu_trend 81.4 > 80: ceil(7 x 87.3 / 70) = ceil(8.73) = 9; ... | highest ask 9 -> scale-up rate limit 8
    -> 8

Each ask is the kernel's own ceil(ratio x base): the ratio it used (value / target, capped at 2 for latency
and error rate, HPA's ratio with unready replicas counted at 0 %) and the replica count it multiplied (the
ready count the decision saw). The product is printed with as many digits as it takes for its ceiling to
be the ask, so the arithmetic on the line always gives the count decided.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from scaler.decision.kernel.codes import MAX_SIGNAL_RATIO
from scaler.decision.reasons import Reason, describe
from scaler.policy.model import MetricKind, Policy
from scaler.units import format_duration


@dataclass(frozen=True)
class Values:
    """One target's decision: what was read and every step's value (per-metric lists are in policy order)."""

    current: float
    observed: list[float]
    smoothed: list[float]
    asks: list[float]
    ask_ratio: list[float]
    ask_base: list[float]
    raw: float
    low: float
    high: float
    stabilized: float
    up_limit: float
    down_limit: float
    limited: float
    desired: float
    reasons: int
    # a seasonal window's numbers per metric (NaN and False for the other windows; empty in a status saved
    # before seasonal windows existed)
    correlation: list[float] = field(default_factory=list)
    season: list[float] = field(default_factory=list)
    level_ratio: list[float] = field(default_factory=list)
    headroom: list[float] = field(default_factory=list)
    no_opinion: list[bool] = field(default_factory=list)
    # a max window with noisy_length: the mean change over the mean level it compared (NaN for the others)
    noise: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, steps, observed: np.ndarray, current: np.ndarray, j: int) -> Values:
        """Target j of a decision's steps (scaler.decision.kernel.tick.Outputs, arrays (..., targets))."""
        per_metric = ("smoothed", "asks", "ask_ratio", "ask_base", "correlation", "season", "level_ratio", "headroom",
                      "no_opinion", "noise")
        fields = {name: (getattr(steps, name)[:, j].tolist() if name in per_metric else float(getattr(steps, name)[j]))
                  for name in steps._fields if name != "reasons"}
        return cls(current=float(current[j]), observed=np.asarray(observed)[:, j].tolist(),
                   reasons=int(steps.reasons[j]), **fields)

    def to_json(self) -> dict:
        """JSON-ready: NaN and infinities as None."""
        def clean(x):
            if isinstance(x, list):
                return [clean(v) for v in x]
            return None if isinstance(x, float) and not math.isfinite(x) else x
        return {k: clean(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, doc: dict) -> Values:
        def back(x):
            if isinstance(x, list):
                return [back(v) for v in x]
            return math.nan if x is None else x
        return cls(**{k: back(v) for k, v in doc.items()})


def _num(x: float) -> str:
    return "no data" if x is None or math.isnan(x) else f"{x:.4g}"


def _product(x: float, ask: float) -> str:
    """x with the fewest significant digits (4 at least) whose ceiling is `ask`, the ceiling the kernel
    took (it reads a hair over an integer, 3.0000000001, as that integer)."""
    for digits in range(4, 18):
        text = f"{x:.{digits}g}"
        if math.ceil(float(text)) == ask:
            return text
    return repr(x)


def _ask(m, value: float, ratio: float, base: float, ask: float, hpa: bool, whole: bool = False) -> str:
    """How one metric's ask came about: 'ceil(7 x 79.1 / 70) = ceil(7.91) = 8'."""
    if math.isnan(ask):
        return "no ask"
    if whole:  # HPA's resource utilization: a whole percent, 53.7 % counts as 53
        value = math.floor(value)
    shown = f"{value:g} (whole percent)" if whole else _num(value)
    if math.isnan(ratio):  # HPA: inside the tolerance, the count stays
        return f"{shown} / {m.target:g} within the tolerance: keeps {_count(ask)}"
    exact = value / m.target
    if ratio == exact:
        factor = f"{value:g} / {m.target:g}" if whole else f"{_num(value)} / {m.target:g}"
    elif not hpa and ratio == MAX_SIGNAL_RATIO and exact > MAX_SIGNAL_RATIO:
        factor = f"min({_num(value)} / {m.target:g}, {MAX_SIGNAL_RATIO:g})"
    else:  # HPA with unready replicas: the ratio over every replica, the unready ones at 0 %
        factor = f"{ratio:.4g} (unready replicas counted at 0 %)"
    product = ratio * base
    head = f"ceil({factor})" if base == 1 and m.kind == MetricKind.gauge else f"ceil({base:g} x {factor})"
    return f"{head} = ceil({_product(product, ask)}) = {_count(ask)}"


def explain(policy: Policy, v: Values) -> str:
    """One line for one target's decision."""
    hpa = policy.algorithm == "hpa"
    parts = []
    for i, m in enumerate(policy.metrics):
        s = v.smoothed[i]
        text = f"{m.name} {_num(v.observed[i])}"
        if m.window.type == "seasonal" and not math.isnan(s):
            told, asked = _seasonal(m, v, i)
            text += told
            if not asked:
                parts.append(text)
                continue
        elif m.window.noisy_length is not None and i < len(v.noise):
            text += _noisy(m, v.noise[i], s)
        elif m.window.type != "last":
            text += f" (smoothed {_num(s)})"
        if not math.isnan(s):
            if not hpa:
                if s > m.up_threshold:
                    text += f" > {m.up_threshold:g}"
                elif s < m.down_threshold:
                    text += f" < {m.down_threshold:g}"
                else:
                    text += f" within [{m.down_threshold:g}, {m.up_threshold:g}]"
            text += ": " + _ask(m, s, v.ask_ratio[i], v.ask_base[i], v.asks[i], hpa, policy.whole_percent(m))
        parts.append(text)
    head = f"{v.current:g} -> {v.desired:g}" if v.desired != v.current else f"hold {v.current:g}"
    tags = describe(v.reasons) or "NO_CHANGE"
    # The asks scale from the ready replicas the decision saw (the metrics' own moment), not the count now.
    bases = {b for b, m in zip(v.ask_base, policy.metrics, strict=True) if m.kind != MetricKind.gauge and b == b}
    seen = f" (asks from {_count(bases.pop())} ready)" if len(bases) == 1 and v.current not in bases else ""
    return f"{head} [{tags}]{seen}: " + "; ".join(parts) + " | " + chain(policy, v)


def _seasonal(m, v: Values, i: int) -> tuple[str, bool]:
    """A seasonal window's reading and whether it asked: ' (seasonal 120 a period ago x level 1.1 + headroom 3 =
    135; correlation 0.93 >= 0.5)', or ' (level 118; no opinion: correlation 0.21 < 0.5): asks nothing'."""
    def at(name: str) -> float:
        values = getattr(v, name)
        return float(values[i]) if i < len(values) and values[i] is not None else math.nan

    w = m.window
    corr, floor = at("correlation"), w.effective_min_correlation
    silent = bool(v.no_opinion[i]) if i < len(v.no_opinion) else False
    if silent:
        if math.isnan(corr):
            why = "no correlation at the period yet (it needs about 1.5 periods of history)"
        elif corr < floor:
            why = f"correlation {_down(corr, floor)} < {floor:g}"
        elif math.isnan(at("season")):
            why = "no bucket a period ago to read"
        else:  # the level ratio: no recent bucket pairs with one a period ago, or idle then and busy now
            why = "no level a period ago to scale by"
        return f" (level {_num(v.smoothed[i])}; no opinion: {why}): asks nothing", False
    room = at("headroom")
    extra = f" + headroom {_num(room)}" if w.headroom_q is not None else ""
    return (f" (seasonal {_num(at('season'))} a period ago x level {at('level_ratio'):.4g}{extra} = "
            f"{_num(v.smoothed[i])}; correlation {_down(corr, floor)} >= {floor:g})"), True


def _noisy(m, noise: float, smoothed: float) -> str:
    """A max window with noisy_length, with the span it read and why: ' (max of the last 5m: changes average
    52.1 % of the level > 10 %; smoothed 93)'. The share is rounded away from the threshold (up when above it,
    down when not), so the comparison printed reads true."""
    w = m.window
    above = w.effective_noisy_above
    if noise != noise:
        return f" (max of the last {format_duration(w.length)}: noise not measured yet; smoothed {_num(smoothed)})"
    noisy = noise > above
    pct = noise * 100
    shown = math.ceil(pct * 10) / 10 if noisy else math.floor(pct * 10 + 1e-9) / 10
    if noisy and shown <= above * 100:  # a hair above the threshold that rounds onto it
        shown += 0.1
    shown_text = "changes on a level of 0" if math.isinf(noise) else f"{shown:.1f} %"
    span = format_duration(w.noisy_length if noisy else w.length)
    if math.isinf(noise):
        return f" (max of the last {span}: {shown_text}; smoothed {_num(smoothed)})"
    return (f" (max of the last {span}: changes average {shown_text} of the level "
            f"{'>' if noisy else '<='} {above * 100:g} %; smoothed {_num(smoothed)})")


def _down(corr: float, floor: float) -> str:
    """A correlation rounded down to the threshold's decimals (at least two), so the comparison printed beside it
    reads true: 0.6996 against 0.7 is '0.69 < 0.7', never '0.70 < 0.7'."""
    digits = max(2, len(f"{floor:g}".partition(".")[2]))
    return f"{math.floor(corr * 10**digits + 1e-9) / 10**digits:.{digits}f}"  # (0.29 x 100 is 28.999...)


def chain(policy: Policy, v: Values) -> str:
    """The steps from the asks to the count decided, each '<step> <value> (<why>)', ending with the count:
    'highest ask 9 -> rate-limited 8 (the scale-up limit allows 8 now) -> 8'."""
    r = Reason(v.reasons)
    b = policy.effective_behavior
    n = _count
    if r & (Reason.DISABLED | Reason.OUT_OF_RANGE):
        why = "current replicas are 0: autoscaling is off" if r & Reason.DISABLED else \
            f"current outside [{policy.replicas.min}, {policy.replicas.max}]: to the bound"
        return f"{why} -> {n(v.desired)}"
    if r & Reason.NO_DATA and not r & Reason.FALLBACK:
        return f"held {n(v.current)} (a metric has no fresh data; missing data never scales down) -> {n(v.desired)}"
    steps: list[str] = []
    finite = [a for a in v.asks if not math.isnan(a)]
    if r & (Reason.METRIC_UP | Reason.METRIC_DOWN):
        steps.append(f"highest ask {n(max(finite))}")
    elif r & Reason.IN_BAND:
        steps.append(f"kept {n(v.raw)} (in band)")
    if r & Reason.FALLBACK:
        steps.append(f"fallback {n(v.raw)} (blind for {policy.fallback.failure_threshold} ticks)")
    if r & Reason.SCALE_DOWN_STABILIZED:
        window = 300 if policy.legacy else b.scale_down.stabilization
        steps.append(f"stabilized {n(v.stabilized)} (the highest recommendation of the last {window:g} s is "
                     f"{n(v.high)})")
    if r & Reason.SCALE_UP_STABILIZED:
        steps.append(f"stabilized {n(v.stabilized)} (the lowest recommendation of the last "
                     f"{b.scale_up.stabilization:g} s is {n(v.low)})")
    if r & Reason.SCALE_UP_LIMIT:
        allows = f"max(2 x {n(v.current)}, 4)" if policy.legacy else n(v.up_limit)
        steps.append(f"rate-limited {n(v.limited)} (the scale-up limit allows {allows} now)")
    if r & Reason.SCALE_DOWN_LIMIT:
        steps.append(f"rate-limited {n(v.limited)} (the scale-down limit allows {n(v.down_limit)} now)")
    if r & Reason.TOO_MANY_REPLICAS:
        steps.append(f"clamped {n(v.limited)} (replicas.max)")
    if r & Reason.TOO_FEW_REPLICAS:
        steps.append(f"clamped {n(v.limited)} (replicas.min)")
    if r & Reason.SCALE_UP_COOLDOWN:
        steps.append(f"kept {n(v.current)} (scale-up cooldown: {b.scale_up.cooldown:g} s after the last scale-up)")
    if r & Reason.SCALE_DOWN_COOLDOWN:
        steps.append(f"kept {n(v.current)} (scale-down cooldown: {b.scale_down.cooldown:g} s after the last "
                     "scale action)")
    if r & Reason.PANIC:
        steps.append(f"panic {n(v.desired)} (a short-window burst; no scale-down while it lasts)")
    steps.append(n(v.desired))
    return " -> ".join(steps)


def _count(x: float) -> str:
    """A replica count as text (-0.0, which a ceiling can give, as 0)."""
    return f"{x + 0.0:g}"
