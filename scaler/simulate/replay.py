"""Closed-loop replay: recorded demand drives a simulated world, and the world's metrics drive `decide`.

Time steps one policy interval at a time (each tick depends on the last decision), but every step works on
all targets at once, so 1,000 targets cost about what one does.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaler.decision.kernel.tick import WINDOW_OUTPUTS, Outputs, outputs
from scaler.decision.params import params_of
from scaler.decision.state import initial_state
from scaler.errors import DataError, Problem
from scaler.policy.model import MetricKind, Policy
from scaler.recordings.load import Recording, resample
from scaler.simulate.closedloop import Timeline, Totals, WorldState, run_chunk
from scaler.simulate.timing import DESCRIBE, interpolated
from scaler.simulate.world import World, model
from scaler.units import format_duration

MAX_DEMAND = 1e9  # replicas of work one target may need at a moment


@dataclass(frozen=True)
class Demand:
    """What the world is asked to serve, on the policy's tick grid."""

    times: np.ndarray  # (ticks,)
    load: np.ndarray  # (targets, ticks) replica-equivalents of work; NaN = unknown (a gap)
    gauges: dict[str, np.ndarray]  # recorded metrics replayed as they are (targets, ticks)
    initial: np.ndarray  # (targets,) replicas at the start
    load_metric: str
    sample_step: float  # seconds between recorded samples (each is held until the next)
    absent: tuple[str, ...] = ()  # metrics of the policy neither recorded nor simulated: left out by design


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
    replayed, absent = _recorded_or_absent(policy, rec)
    if problems:
        raise DataError(rec.source, problems)
    times, series, replicas = resample(rec, interval=policy.interval)
    if world.sample_timing == "interpolate":
        series = interpolated(rec, times, series)
    values = series[load]
    if world.capacity is not None:
        # A count (requests per sample) over what one replica serves: 650 req / 50 per replica = 13.
        demand = values / world.capacity
    else:
        # CPU % of the replicas serving then: 85 % on 4 replicas = 3.4 replicas' worth of work.
        rec_replicas = replicas if replicas is not None else np.full_like(values, world.recorded_replicas)
        rec_replicas = np.where(np.isnan(rec_replicas), world.recorded_replicas, rec_replicas)
        demand = values / 100.0 * rec_replicas
    # Demand past a billion replicas is a units mistake (a capacity of 1e-300, a count read as CPU %), and
    # an infinite one would reach the compiled loop: say so instead.
    too_big = np.nanmax(demand, initial=0.0) if demand.size else 0.0
    if not too_big <= MAX_DEMAND:
        option = "--capacity" if world.capacity is not None else "--recorded-replicas"
        raise DataError(rec.source, [Problem(load, f"demand reaches {too_big:g} replicas of work (at most "
                                             f"{MAX_DEMAND:g}): check {option}")])
    first = replicas[:, 0] if replicas is not None else np.full(values.shape[0], world.recorded_replicas)
    first = np.where(np.isnan(first), world.recorded_replicas, first)
    initial = np.clip(np.round(first), policy.replicas.min, policy.replicas.max)
    gauges = {name: series[name] for name in replayed}
    return Demand(times=times, load=demand, gauges=gauges, initial=initial, load_metric=load,
                  sample_step=rec.step, absent=absent)


def _recorded_or_absent(policy: Policy, rec: Recording) -> tuple[list[str], tuple[str, ...]]:
    """Which metrics replay their recorded values, and which are absent by design.

    The world simulates CPU-like utilization from demand, and latency and error rate from how busy the
    replicas are. A utilization metric that reads another query than the policy's first one (memory, say)
    is not demand: it replays its own column when the recording has one, and is otherwise absent, left out
    of every decision (a metric that is always missing would hold every scale-down)."""
    util = [m for m in policy.metrics if m.kind == MetricKind.utilization]
    demand_query = util[0].query if util else None
    replayed = [m.name for m in policy.metrics if m.kind == MetricKind.gauge]
    absent = []
    for m in util[1:]:
        if m.query == demand_query:
            continue
        if m.name in rec.metrics:
            replayed.append(m.name)
        else:
            absent.append(m.name)
    return replayed, tuple(absent)


def _infer_load(policy: Policy, rec: Recording) -> str | None:
    for m in policy.metrics:
        if m.kind == MetricKind.utilization and m.name in rec.metrics:
            return m.name
    return next(iter(rec.metrics)) if len(rec.metrics) == 1 else None


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
    # (targets, metrics): a seasonal window's ticks asked and its latest correlation at the period; a max with
    # noisy_length: its ticks noisy (reading its long span); 0 and NaN in the other windows' rows
    window_ticks: np.ndarray | None = None
    seasonal_correlation: np.ndarray | None = None

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
        for i, m in enumerate(self.policy.metrics):
            if m.window.type != "seasonal" or self.window_ticks is None or self.seasonal_correlation is None:
                continue
            for k, t in enumerate(self.targets):
                corr = float(self.seasonal_correlation[k, i])
                per_target[t].setdefault("seasonal", {})[m.name] = {
                    "correlation": round(corr, 4) if math.isfinite(corr) else None,
                    "asked_ticks": int(self.window_ticks[k, i]),
                    "asked_share": round(float(self.window_ticks[k, i]) / max(len(self.times), 1), 4),
                }
        for i, m in enumerate(self.policy.metrics):
            if m.window.noisy_length is None or self.window_ticks is None:
                continue
            for k, t in enumerate(self.targets):
                per_target[t].setdefault("noisy", {})[m.name] = {
                    "noisy_ticks": int(self.window_ticks[k, i]),
                    "noisy_share": round(float(self.window_ticks[k, i]) / max(len(self.times), 1), 4),
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
                      "replay": DESCRIBE[self.world.sample_timing]},
            "notes": self.notes,
        }


def simulate(
    policy: Policy,
    rec: Recording,
    world: World | None = None,
    *,
    record: bool = True,
    detail: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Replay `rec` through `policy` closed-loop. `record=False` keeps only totals (for big benchmarks);
    `detail=True` keeps every decision output per tick as well (to explain the run)."""
    world = world or World()
    demand = demand_for(policy, rec, world)
    return run(policy, demand, world, targets=rec.targets, record=record, detail=detail, progress=progress)


def run(
    policy: Policy,
    demand: Demand,
    world: World,
    *,
    targets: tuple[str, ...],
    record: bool = True,
    detail: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Result:
    """The tick loop over prepared demand (exposed so benchmarks can build demand without files).

    workers: processes to split the targets across (None: one per available CPU, up to 2, once there are
    enough targets to pay for starting one). Targets never interact, so each block is replayed on its own
    exactly as in one process, and the results are put back together in target order.
    """
    if demand.absent:  # metrics neither recorded nor simulated: left out of the decisions, said once below
        policy = policy.model_copy(update={"metrics": [m for m in policy.metrics if m.name not in demand.absent]})
    ticks, n, m = len(demand.times), demand.load.shape[0], len(policy.metrics)
    if workers is None:
        workers = min(2, _cpus()) if n >= _SPLIT_MIN_TARGETS else 1
    workers = max(1, min(workers, n))
    if workers > 1 and "fork" not in mp.get_all_start_methods():
        workers = 1  # the blocks share the demand arrays by forking
    # With several workers the timeline lives in shared memory, so every worker writes its own columns.
    tl = timeline(ticks, m, n, detail=detail, shared=workers > 1) if record else None
    bounds = np.linspace(0, n, workers + 1).round().astype(int).tolist()
    blocks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    children = []
    for block in blocks[1:]:
        here, there = mp.get_context("fork").Pipe(duplex=False)
        child = mp.get_context("fork").Process(target=_worker, args=(there, policy, demand, world, block, tl, detail),
                                                daemon=True)
        child.start()
        there.close()
        children.append((child, here))
    try:
        totals = [_replay(policy, _block(demand, blocks[0]), world, _columns(tl, blocks[0]), detail, progress)]
        for child, here in children:
            try:
                outcome = here.recv()
            except EOFError:
                outcome = RuntimeError(f"simulation worker {child.pid} exited without a result")
            if isinstance(outcome, BaseException):
                raise outcome
            totals.append(outcome)
    finally:
        for child, here in children:
            here.close()
            child.join(timeout=1.0)
            if child.is_alive():
                child.terminate()
    # per-target figures end on the targets axis: (targets,), and (metrics, targets) for the seasonal windows'
    hours, violation, no_data, ups, downs, peak, asked, corr = (np.concatenate(parts, axis=-1)
                                                                for parts in zip(*totals, strict=True))

    dt = policy.interval
    notes = []
    if demand.sample_step > dt:
        how = ("held for" if world.sample_timing == "hold" else "joined by straight lines over")
        notes.append(f"recorded samples every {demand.sample_step:g} s were {how} "
                     f"{demand.sample_step / dt:g} ticks of {dt:g} s each (--sample-timing {world.sample_timing})")
    if demand.absent:
        notes.append(f"{', '.join(demand.absent)}: not in the recording, so absent by design: left out of "
                     f"{policy.name}'s decisions (the live loop reads it)")
    seasonal = [i for i, mm in enumerate(policy.metrics) if mm.window.type == "seasonal"]
    noisy = [i for i, mm in enumerate(policy.metrics) if mm.window.noisy_length is not None]
    notes += window_notes(policy, asked, corr, ticks)
    counted = bool(seasonal or noisy)
    return Result(policy=policy, targets=tuple(targets), times=demand.times, world=world, demand=demand,
                  replica_hours=hours, slo_violation_seconds=violation, no_data_seconds=no_data,
                  scale_ups=ups, scale_downs=downs, peak_replicas=peak, timeline=tl, notes=notes,
                  window_ticks=np.ascontiguousarray(asked.T) if counted else None,
                  seasonal_correlation=np.ascontiguousarray(corr.T) if counted else None)


def window_notes(policy: Policy, asked: np.ndarray, corr: np.ndarray, ticks: int) -> list[str]:
    """One note per seasonal window, then one per max with noisy_length, from the (metrics, targets) counts."""
    ms = policy.metrics
    return ([seasonal_note(ms[i], asked[i], corr[i], ticks) for i, m in enumerate(ms) if m.window.type == "seasonal"]
            + [noisy_note(ms[i], asked[i], ticks) for i, m in enumerate(ms) if m.window.noisy_length is not None])


def noisy_note(metric, noisy: np.ndarray, ticks: int) -> str:
    """'cpu: max window (30s; 5m while noisy: changes above 25 % of the level): noisy on 97 % of ticks'."""
    w = metric.window
    shares = noisy / max(ticks, 1)
    share = float(noisy.sum()) / max(ticks * noisy.size, 1)
    spread = f" (per target {100 * shares.min():.0f} % to {100 * shares.max():.0f} %)" if noisy.size > 1 else ""
    return (f"{metric.name}: max window ({format_duration(w.length)}; {format_duration(w.noisy_length)} while noisy: "
            f"changes above {100 * w.effective_noisy_above:g} % of the level): noisy on {100 * share:.0f} % of "
            f"ticks{spread}")


def seasonal_note(metric, asked: np.ndarray, corr: np.ndarray, ticks: int) -> str:
    """'cpu_daily: seasonal window (1d): correlation at the period at the end 0.93 (per target 0.91 to 0.95),
    at least 0.5 to ask; it asked on 64 % of ticks'."""
    w = metric.window
    known = corr[np.isfinite(corr)]
    if known.size == 0:
        level = "not known at the end (under 1.5 periods of history)"
    elif known.size == 1 and corr.size == 1:
        level = f"at the end {known[0]:.2f}"
    else:
        level = (f"at the end {np.median(known):.2f} (per target {known.min():.2f} to {known.max():.2f}"
                 f"{'' if known.size == corr.size else f', unknown for {corr.size - known.size}'})")
    share = float(asked.sum()) / max(ticks * asked.size, 1)
    return (f"{metric.name}: seasonal window ({format_duration(w.period)}): correlation at the period {level}, "
            f"at least {w.effective_min_correlation:g} to ask; it asked on {100 * share:.0f} % of ticks")


# Below this many targets a second process barely pays for starting it (on 2 CPUs: 100 targets x 1 week
# 0.6 s either way; 300 targets 1.6 -> 1.3 s; 1,000 targets 4.1 -> 2.8 s).
_SPLIT_MIN_TARGETS = 256


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _block(demand: Demand, block: slice) -> Demand:
    """The demand of the targets in `block` (views, no copies)."""
    return Demand(times=demand.times, load=demand.load[block], gauges={k: v[block] for k, v in demand.gauges.items()},
                  initial=demand.initial[block], load_metric=demand.load_metric, sample_step=demand.sample_step,
                  absent=demand.absent)


def _columns(tl: Timeline | None, block: slice) -> Timeline | None:
    """The timeline's columns of the targets in `block` (views into the same arrays)."""
    if tl is None:
        return None
    return Timeline(*(a[..., block] for a in tl[:-1]), decisions=Outputs(*(a[..., block] for a in tl.decisions)))


def _worker(conn, policy: Policy, demand: Demand, world: World, block: slice, tl: Timeline | None,
            detail: bool) -> None:
    """A forked process: replay one block of targets and send back its totals (or the error)."""
    try:
        conn.send(_replay(policy, _block(demand, block), world, _columns(tl, block), detail, None))
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(e)
    finally:
        conn.close()


def _replay(policy: Policy, demand: Demand, world: World, tl: Timeline | None, detail: bool,
            progress: Callable[[int, int], None] | None) -> Totals:
    """The closed loop for one block of targets: its totals per target, and the timeline filled in when
    given (every decision output too when `detail`).

    The loop itself is compiled (scaler.simulate.closedloop.run_chunk); here the demand is laid out a chunk
    of ticks at a time (a tick is one contiguous row), and progress is reported between chunks.
    """
    p = params_of(policy)
    w = model(world, policy)
    times = np.ascontiguousarray(demand.times, dtype=np.float64)
    ticks, n, m = len(times), demand.load.shape[0], len(policy.metrics)
    requested = np.ascontiguousarray(demand.initial, dtype=np.float64)
    state = initial_state(p, requested, float(times[0]) if ticks else 0.0)
    ws = WorldState(requests=np.tile(requested, (w.delay, 1)), seen=np.full((w.lag + 1, m, n), np.nan),
                    seen_ready=np.tile(requested, (w.lag + 1, 1)))
    totals = Totals(replica_hours=np.zeros(n), violation_seconds=np.zeros(n), no_data_seconds=np.zeros(n),
                    scale_ups=np.zeros(n, dtype=np.int64), scale_downs=np.zeros(n, dtype=np.int64),
                    peak_replicas=requested.copy(), asked=np.zeros((m, n), dtype=np.int64),
                    correlation=np.full((m, n), np.nan))
    record = tl is not None
    # Without a timeline the compiled loop still takes one: empty arrays it never writes.
    rows = tl if record else timeline(0, m, n)
    gauge_rows = [i for i, mm in enumerate(policy.metrics) if mm.name in demand.gauges]
    replayed = np.zeros(m, dtype=np.bool_)
    replayed[gauge_rows] = True
    names = [mm.name for mm in policy.metrics]
    chunk = max(1, min(ticks, _CHUNK_CELLS // max(n, 1), max(ticks // 100, 64)))
    o = outputs(m, n)
    for k0 in range(0, ticks, chunk):
        k1 = min(ticks, k0 + chunk)
        load = np.ascontiguousarray(demand.load[:, k0:k1].T, dtype=np.float64)  # (ticks, targets)
        gauges = np.empty((m, k1 - k0 if gauge_rows else 0, n))
        for i in gauge_rows:
            gauges[i] = demand.gauges[names[i]][:, k0:k1].T
        run_chunk(p, w, k0, times[k0:k1], load, gauges, replayed, state, ws, totals, rows, record, detail, o)
        if progress is not None:
            progress(k1, ticks)
    return totals


# Ticks per chunk x targets: about 1 MB per (chunk, targets) float array.
_CHUNK_CELLS = 1 << 17


def timeline(ticks: int, m: int, n: int, *, detail: bool = False, shared: bool = False) -> Timeline:
    """Zeroed timeline arrays; with `detail` every decision output per tick too (else those are empty);
    `shared` puts them in memory that forked workers write into as well."""

    def z(*shape, dtype=float, keep=True):
        if not keep:
            shape = (0,) * len(shape)
        if not shared:
            return np.zeros(shape, dtype=dtype)
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    per_metric = {"smoothed", "asks", "ask_ratio", "ask_base", *WINDOW_OUTPUTS}
    always = {"smoothed", "desired", "reasons"}
    types = {"reasons": np.int64, "no_opinion": np.bool_}
    decisions = Outputs(**{
        name: z(ticks, *((m,) if name in per_metric else ()), n, dtype=types.get(name, float),
                keep=detail or name in always)
        for name in Outputs._fields})
    return Timeline(replicas=z(ticks, n), ready=z(ticks, n), demand=z(ticks, n), observed=z(ticks, m, n),
                    slo_ok=z(ticks, n, dtype=np.int8), decisions=decisions)


def warm() -> float:
    """decide.warm() for the simulator's compiled loop as well: the seconds it took."""
    import time

    from scaler import defaults
    from scaler.policy.load import load_policy

    start = time.perf_counter()
    policy = load_policy(defaults.DEFAULT_POLICY)
    times = np.arange(4) * policy.interval
    demand = Demand(times=times, load=np.ones((2, 4)), gauges={}, initial=np.ones(2), load_metric="cpu",
                    sample_step=policy.interval)
    for record in (True, False):
        run(policy, demand, World(), targets=("a", "b"), record=record, workers=1)
    # A block of targets split across processes writes into column views of the timeline (not contiguous):
    # compiled separately, here, rather than by the parent and every worker at once on a first big run.
    for detail in (False, True):
        tl = timeline(len(times), len(policy.metrics), 2, detail=detail)
        _replay(policy, _block(demand, slice(0, 1)), World(), _columns(tl, slice(0, 1)), detail, None)
    return time.perf_counter() - start
