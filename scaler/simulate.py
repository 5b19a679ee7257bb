"""Closed-loop replay: recorded demand drives a simulated world, and the world's metrics drive `decide`.

Time steps one policy interval at a time (each tick depends on the last decision), but every step works on
all targets at once, so 1,000 targets cost about what one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaler.decide import Spec, decide, initial_state
from scaler.errors import DataError, Problem
from scaler.metrics.recorded import Recording, resample
from scaler.policy import MetricKind, Policy
from scaler.world import World


@dataclass(frozen=True)
class Demand:
    """What the world is asked to serve, on the policy's tick grid."""

    times: np.ndarray  # (ticks,)
    load: np.ndarray  # (targets, ticks) replica-equivalents of work; NaN = unknown (a gap)
    gauges: dict[str, np.ndarray]  # recorded metrics replayed as they are (targets, ticks)
    initial: np.ndarray  # (targets,) replicas at the start
    load_metric: str
    sample_step: float  # seconds between recorded samples (each is held until the next)


def demand_for(policy: Policy, rec: Recording, world: World) -> Demand:
    """Turn a recording into demand for one policy, or raise DataError saying what does not fit."""
    problems: list[Problem] = []
    load = world.load or _infer_load(policy, rec)
    if load is None or load not in rec.metrics:
        have = ", ".join(sorted(rec.metrics)) or "none"
        problems.append(Problem("load", f"no recorded metric drives demand (recording has: {have}); "
                                "name one with --load, or map a two-column file with --metric"))
    for m in policy.metrics:
        if m.kind == MetricKind.gauge and m.name not in rec.metrics:
            problems.append(Problem(f"metrics.{m.name}", "gauge metric is not in the recording"))
    if problems:
        raise DataError(rec.source, problems)
    times, series, replicas = resample(rec, interval=policy.interval)
    values = series[load]
    if world.capacity is not None:
        # A count (requests per sample) over what one replica serves: 650 req / 50 per replica = 13.
        demand = values / world.capacity
    else:
        # CPU % of the replicas serving then: 85 % on 4 replicas = 3.4 replicas' worth of work.
        rec_replicas = replicas if replicas is not None else np.full_like(values, world.recorded_replicas)
        rec_replicas = np.where(np.isnan(rec_replicas), world.recorded_replicas, rec_replicas)
        demand = values / 100.0 * rec_replicas
    first = replicas[:, 0] if replicas is not None else np.full(values.shape[0], world.recorded_replicas)
    first = np.where(np.isnan(first), world.recorded_replicas, first)
    initial = np.clip(np.round(first), policy.replicas.min, policy.replicas.max)
    gauges = {m.name: series[m.name] for m in policy.metrics if m.kind == MetricKind.gauge}
    return Demand(times=times, load=demand, gauges=gauges, initial=initial, load_metric=load,
                  sample_step=rec.step)


def _infer_load(policy: Policy, rec: Recording) -> str | None:
    for m in policy.metrics:
        if m.kind == MetricKind.utilization and m.name in rec.metrics:
            return m.name
    return next(iter(rec.metrics)) if len(rec.metrics) == 1 else None


@dataclass
class Timeline:
    """Per-tick arrays (ticks, targets), and per-metric (ticks, metrics, targets)."""

    replicas: np.ndarray
    ready: np.ndarray
    desired: np.ndarray
    demand: np.ndarray
    observed: np.ndarray
    smoothed: np.ndarray
    slo_ok: np.ndarray  # 1 ok, 0 breach, -1 unknown (no demand recorded)
    reasons: np.ndarray


@dataclass
class Result:
    """One policy replayed: totals per target, and the timeline when asked for."""

    policy: Policy
    targets: tuple[str, ...]
    times: np.ndarray
    world: World
    demand: Demand
    replica_hours: np.ndarray
    slo_violation_seconds: np.ndarray
    no_data_seconds: np.ndarray
    scale_ups: np.ndarray
    scale_downs: np.ndarray
    peak_replicas: np.ndarray
    timeline: Timeline | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """summary.json's entry for this policy: per target totals and the model used."""
        per_target = {
            t: {
                "replica_hours": round(float(self.replica_hours[i]), 3),
                "slo_violation_seconds": float(self.slo_violation_seconds[i]),
                "no_data_seconds": float(self.no_data_seconds[i]),
                "scale_ups": int(self.scale_ups[i]),
                "scale_downs": int(self.scale_downs[i]),
                "peak_replicas": int(self.peak_replicas[i]),
            }
            for i, t in enumerate(self.targets)
        }
        return {
            "policy": self.policy.name,
            "algorithm": self.policy.algorithm,
            "interval_seconds": self.policy.interval,
            "ticks": int(len(self.times)),
            "start": float(self.times[0]) if len(self.times) else None,
            "end": float(self.times[-1]) if len(self.times) else None,
            "targets": per_target,
            "model": {**self.world.model_dump(), "load_metric": self.demand.load_metric,
                      "recorded_sample_seconds": self.demand.sample_step,
                      "replay": "each recorded sample held until the next (a gap longer than one sample "
                                "step is no data)"},
            "notes": self.notes,
        }


def _world_metrics(policy: Policy, demand: Demand, k: int, util, latency, errors) -> np.ndarray:
    """What each policy metric reads in the world at tick k, (metrics, targets)."""
    by_kind = {MetricKind.utilization: util, MetricKind.latency: latency, MetricKind.error_rate: errors}
    return np.stack([by_kind[m.kind] if m.kind in by_kind else demand.gauges[m.name][:, k]
                     for m in policy.metrics])


def simulate(
    policy: Policy,
    rec: Recording,
    world: World | None = None,
    *,
    record: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Replay `rec` through `policy` closed-loop. `record=False` keeps only totals (for big benchmarks)."""
    world = world or World()
    demand = demand_for(policy, rec, world)
    return run(policy, demand, world, targets=rec.targets, record=record, progress=progress)


def run(
    policy: Policy,
    demand: Demand,
    world: World,
    *,
    targets: tuple[str, ...],
    record: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """The tick loop over prepared demand (exposed so benchmarks can build demand without files)."""
    spec = Spec.of(policy)
    dt = policy.interval
    times = demand.times
    ticks, n, m = len(times), demand.load.shape[0], len(policy.metrics)
    slo = policy.slo

    # Startup delay: a replica requested at the end of tick j serves from tick j + d. With newest replicas
    # removed first, ready = the smallest request in effect over the last d ticks (60 s / 15 s -> d = 4).
    d = max(1, int(math.ceil(world.startup_delay / dt))) if world.startup_delay > 0 else 1
    lag = int(round(world.lag / dt))
    requested = demand.initial.astype(float)
    req_ring = np.tile(requested, (d, 1))
    seen_ring = np.full((lag + 1, m, n), np.nan)
    state = initial_state(spec, requested, float(times[0]) if ticks else 0.0)

    hours = np.zeros(n)
    violation = np.zeros(n)
    no_data = np.zeros(n)
    ups = np.zeros(n, dtype=np.int64)
    downs = np.zeros(n, dtype=np.int64)
    peak = requested.copy()
    tl = _timeline(ticks, m, n) if record else None
    every = max(1, ticks // 100)

    with np.errstate(all="ignore"):
        for k in range(ticks):
            now = float(times[k])
            ready = req_ring.min(axis=0)
            load = demand.load[:, k]
            known = load == load  # False where the recording has a gap
            rho = np.where(ready > 0, load / ready, np.where(load > 0, np.inf, 0.0))
            util, latency, errors = 100.0 * np.minimum(rho, 1.0), world.latency(rho), world.error_rate(rho)
            truth = _world_metrics(policy, demand, k, util, latency, errors)
            truth[:, ~known] = np.nan
            seen_ring[k % (lag + 1)] = truth
            observed = seen_ring[(k - lag) % (lag + 1)] if k >= lag else np.full((m, n), np.nan)

            dec = decide(spec, state, observed, current=requested, ready=ready, now=now, reuse_state=True)
            state = dec.state
            desired = dec.desired.astype(float)

            breach = np.zeros(n, dtype=bool)
            if slo.latency is not None:
                breach |= latency > slo.latency
            if slo.error_rate is not None:
                breach |= errors > slo.error_rate
            if slo.utilization is not None:
                breach |= rho * 100.0 > slo.utilization
            breach &= known
            violation += breach * dt
            no_data += (~known) * dt
            hours += desired * (dt / 3600.0)
            ups += desired > requested
            downs += desired < requested
            np.maximum(peak, desired, out=peak)

            if tl is not None:
                tl.replicas[k] = requested
                tl.ready[k] = ready
                tl.desired[k] = desired
                tl.demand[k] = load
                tl.observed[k] = observed
                tl.smoothed[k] = dec.smoothed
                tl.slo_ok[k] = np.where(known, ~breach, -1)
                tl.reasons[k] = dec.reasons

            requested = desired
            req_ring[k % d] = requested
            if progress is not None and (k % every == 0 or k == ticks - 1):
                progress(k + 1, ticks)

    notes = []
    if demand.sample_step > dt:
        notes.append(f"recorded samples every {demand.sample_step:g} s were held for "
                     f"{demand.sample_step / dt:g} ticks of {dt:g} s each")
    return Result(policy=policy, targets=tuple(targets), times=times, world=world, demand=demand,
                  replica_hours=hours, slo_violation_seconds=violation, no_data_seconds=no_data,
                  scale_ups=ups, scale_downs=downs, peak_replicas=peak, timeline=tl, notes=notes)


def _timeline(ticks: int, m: int, n: int) -> Timeline:
    z = lambda *s: np.zeros(s)  # noqa: E731
    return Timeline(replicas=z(ticks, n), ready=z(ticks, n), desired=z(ticks, n), demand=z(ticks, n),
                    observed=z(ticks, m, n), smoothed=z(ticks, m, n),
                    slo_ok=np.zeros((ticks, n), dtype=np.int8), reasons=np.zeros((ticks, n), dtype=np.int64))
