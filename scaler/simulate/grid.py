"""The candidate settings `scaler tune` tries: a grid over what moves cost and SLO time most (the CPU's target and
band, the stabilization windows, the cooldowns), each candidate a policy the model accepts.

"The CPU" is the first utilization metric and any other reading its query: the demand the simulator replays.
Other resources (memory) keep their settings: a recording without them says nothing about them.

Every candidate differs from the policy only in settings the compiled decision path reads per column
(scaler.decision.params.PER_COLUMN), so all of them run side by side in one compiled run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from scaler.policy.model import MetricKind, Policy
from scaler.units import format_duration, parse_duration
from scaler.yamlio import problems_from

MAX_CANDIDATES = 5000
"""The most candidates one grid may make: 5,000 x 1,000 targets x a month at 15 s is already 9e11 target-ticks."""


@dataclass(frozen=True)
class Axis:
    """One setting the grid varies: a factor on the utilization metrics, or a duration in seconds."""

    name: str
    what: str
    factor: bool  # a factor (1 = as written) rather than seconds
    defaults: tuple[float, ...]  # the policy's own value is always added
    applies: Callable[[Policy], bool]
    own: Callable[[Policy], float]

    def parse(self, text: str) -> float:
        """One value as given to --grid: '0.9' for a factor; '90s', '2m' or '120' for a duration."""
        if self.factor:
            value = float(text)
            if not 0 < value < 100:
                raise ValueError(f"{self.name}: a factor must be above 0 (1 keeps the policy's value), got {text}")
            return value
        return parse_duration(text)

    def show(self, value: float) -> str:
        return f"x{value:g}" if self.factor else format_duration(value)


def _scaler(p: Policy) -> bool:
    return p.algorithm == "scaler"


def _behaved(p: Policy) -> bool:
    return not p.legacy  # HPA without behavior has fixed windows (Kubernetes' legacy path)


AXES: tuple[Axis, ...] = (
    Axis("target", "factor on the CPU's target (its band moves with it)", True,
         (0.85, 0.92, 1.0, 1.08), lambda p: True, lambda p: 1.0),
    Axis("up", "factor on the CPU's scale_up_above (after target)", True, (0.94, 1.0, 1.06), _scaler,
         lambda p: 1.0),
    Axis("down", "factor on the CPU's scale_down_below (after target)", True, (0.92, 1.0), _scaler,
         lambda p: 1.0),
    Axis("down_stabilization", "scale-down stabilization window", False, (0.0, 60.0, 300.0, 900.0), _behaved,
         lambda p: p.effective_behavior.scale_down.stabilization),
    Axis("up_stabilization", "scale-up stabilization window", False, (), _behaved,
         lambda p: p.effective_behavior.scale_up.stabilization),
    Axis("down_cooldown", "no scale-down this long after any scale action", False, (0.0, 120.0), _scaler,
         lambda p: p.effective_behavior.scale_down.cooldown),
    Axis("up_cooldown", "no scale-up this long after a scale-up", False, (), _scaler,
         lambda p: p.effective_behavior.scale_up.cooldown),
)
BY_NAME = {a.name: a for a in AXES}


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: its settings (axis name -> value, every axis that applies) and the policy."""

    settings: tuple[tuple[str, float], ...]
    policy: Policy

    def describe(self) -> str:
        """'target x0.92, up x1, down x1, down_stabilization 1m, down_cooldown 0s'."""
        return ", ".join(f"{name} {BY_NAME[name].show(v)}" for name, v in self.settings)


@dataclass(frozen=True)
class Grid:
    """Candidate 0 is the policy as written; then every combination of the axes' values, in order."""

    axes: tuple[tuple[str, tuple[float, ...]], ...]  # the axes that apply, with the values tried
    candidates: tuple[Candidate, ...]
    dropped: tuple[tuple[str, str], ...]  # (settings, why) of combinations the policy model refused

    def changes(self, k: int) -> str:
        """What candidate k changes in the policy as written: 'target x1.08, down_stabilization 0s' ('' for
        the policy itself)."""
        own = dict(self.candidates[0].settings)
        return ", ".join(f"{name} {BY_NAME[name].show(v)}" for name, v in self.candidates[k].settings
                         if v != own[name])

    def describe(self) -> str:
        """'target x0.85, x0.92, x1, x1.08; up x0.94, x1, x1.06; ...: 216 candidates'."""
        parts = [f"{name} " + ", ".join(BY_NAME[name].show(v) for v in values) for name, values in self.axes]
        text = "; ".join(parts) + f": {len(self.candidates)} candidates (the policy as written first)"
        if self.dropped:
            text += f", {len(self.dropped)} combinations outside the policy model's bounds left out"
        return text


def parse_grid(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """--grid values, 'down_stabilization=0s,1m,5m', as {axis: values}; ValueError naming the part."""
    out: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or name not in BY_NAME:
            raise ValueError(f"{spec!r}: expected AXIS=V1,V2,... with AXIS one of {', '.join(BY_NAME)}")
        if name in out:
            raise ValueError(f"{name} is given twice")
        try:
            parsed = tuple(BY_NAME[name].parse(v.strip()) for v in values.split(",") if v.strip())
        except ValueError as e:
            raise ValueError(f"{spec!r}: {e}") from None
        if not parsed:
            raise ValueError(f"{spec!r}: no values")
        out[name] = tuple(dict.fromkeys(parsed))
    return out


def grid(policy: Policy, given: Mapping[str, tuple[float, ...]] | None = None) -> Grid:
    """The candidates for `policy`: each axis that applies to its algorithm takes the values `given` for it,
    else its defaults with the policy's own value added. ValueError for an axis that does not apply, for a
    policy without a utilization metric, or for a grid of more than MAX_CANDIDATES."""
    given = dict(given or {})
    if not any(m.kind == MetricKind.utilization for m in policy.metrics):
        raise ValueError(f"{policy.name} has no utilization metric: tune varies utilization targets and bands "
                         "and reads HPA's curve over CPU targets")
    for name in given:
        if not BY_NAME[name].applies(policy):
            raise ValueError(f"{name} does not apply to {policy.name} ({_algorithm(policy)})")
    axes = []
    for a in AXES:
        if not a.applies(policy):
            continue
        values = given.get(a.name) or tuple(sorted(set(a.defaults) | {a.own(policy)}))
        axes.append((a.name, values))
    size = 1
    for _, values in axes:
        size *= len(values)
    if size > MAX_CANDIDATES:
        raise ValueError(f"the grid has {size:,} candidates, more than {MAX_CANDIDATES:,}: give fewer values")
    own = tuple((name, BY_NAME[name].own(policy)) for name, _ in axes)
    candidates = [Candidate(own, policy)]
    dropped = []
    for values in itertools.product(*(v for _, v in axes)):
        settings = tuple((name, v) for (name, _), v in zip(axes, values, strict=True))
        if settings == own:
            continue
        try:
            candidates.append(Candidate(settings, apply(policy, dict(settings))))
        except ValidationError as e:
            dropped.append((", ".join(f"{n} {BY_NAME[n].show(v)}" for n, v in settings),
                            "; ".join(f"{p.where}: {p.what}" for p in problems_from(e))))
    return Grid(tuple(axes), tuple(candidates), tuple(dropped))


def apply(policy: Policy, settings: Mapping[str, float]) -> Policy:
    """`policy` with these settings (a missing axis keeps the policy's value); pydantic's ValidationError when
    the model refuses the result (a band turned upside down, a window past its bound).

    target x0.9 on a 70 % target with band 65-78: target 63, band 58.5-70.2; then up x1.06 -> 74.412.
    Values are kept to 6 significant digits, so the tuned policy file reads as written by hand."""
    data = policy.model_dump()
    ft, fu, fd = (settings.get(k, 1.0) for k in ("target", "up", "down"))
    if (ft, fu, fd) != (1.0, 1.0, 1.0):
        for m, d in zip(policy.metrics, data["metrics"], strict=True):
            if not cpu(policy, m):
                continue
            d["target"] = _short(m.target * ft)
            if policy.algorithm == "scaler":
                d["scale_up_above"] = _short(m.up_threshold * ft * fu)
                d["scale_down_below"] = _short(m.down_threshold * ft * fd)
    timed = {k: v for k, v in settings.items() if k in ("down_stabilization", "up_stabilization", "down_cooldown",
                                                        "up_cooldown") and v != BY_NAME[k].own(policy)}
    if timed:
        behavior = data["behavior"] or policy.effective_behavior.model_dump()
        for key, value in timed.items():
            what, direction = key.split("_", 1)[1], f"scale_{key.split('_', 1)[0]}"
            behavior[direction][what] = value
        data["behavior"] = behavior
    return Policy.model_validate(data)


def cpu(policy: Policy, metric) -> bool:
    """Whether `metric` reads the CPU: the first utilization metric's query (the demand a replay simulates)."""
    util = [m for m in policy.metrics if m.kind == MetricKind.utilization]
    return bool(util) and metric.kind == MetricKind.utilization and metric.query == util[0].query


def _short(x: float) -> float:
    return float(f"{x:.6g}")


def _algorithm(policy: Policy) -> str:
    if policy.legacy:
        return "algorithm: hpa without behavior"
    return f"algorithm: {policy.algorithm}"
