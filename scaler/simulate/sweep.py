"""Policies side by side: many policies that share a state layout replayed as the columns of one compiled run,
in chunks of policies spread over local processes or a Dask cluster.

Policy k of a chunk over N targets holds columns k x N .. (k + 1) x N - 1 (scaler.decision.params.side_by_side):
the same compiled closed loop as `scaler simulate`, each column a target that never interacts with another, so
every policy's figures come out exactly as if it ran alone, whatever the chunks and wherever they run.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from scaler.decision.kernel.tick import outputs
from scaler.decision.params import side_by_side
from scaler.decision.state import initial_state
from scaler.errors import ScalerError
from scaler.policy.model import Policy
from scaler.simulate.closedloop import Totals, WorldState, run_chunk
from scaler.simulate.replay import Demand, timeline
from scaler.simulate.world import World, model

COLUMNS = 1024
"""Columns (policies x targets) of one chunk at most. A tick costs several microseconds whatever its width, so
wider runs do more column-ticks a second, until a tick's state (each column's rings and recommendation history:
a 15-minute window at 15 s keeps 62 slots) no longer stays in the CPU's cache: one process ran web.yaml's
candidates at 14 M column-ticks/s 100 wide, 19 M 400 wide, 22-23 M 800-1,600 wide and 18 M 3,200 wide."""
TICK_CELLS = 1 << 17
"""Ticks x columns of demand laid out at a time (about 1 MB): each chunk of ticks is repeated once per policy
as it is laid out, so a sweep never holds its demand more than once."""


@dataclass(frozen=True)
class Figures:
    """Per policy, summed over its targets (each target's totals added in target order)."""

    replica_hours: np.ndarray
    violation_seconds: np.ndarray  # SLO breached
    scale_ups: np.ndarray  # int64
    scale_downs: np.ndarray  # int64

    @classmethod
    def join(cls, parts: Sequence[Figures]) -> Figures:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def replay_side_by_side(policies: Sequence[Policy], demand: Demand, world: World) -> Totals:
    """One compiled run of `policies` side by side over every target of `demand`: totals per column (policy k,
    target j at column k x targets + j). The policies may differ only in the settings Params has per column
    (targets and bands, stabilization windows, cooldowns); ValueError otherwise.

    As scaler.simulate.replay replays a block of targets (the same initial state, world and closed loop), with
    every chunk of ticks of the demand repeated once per policy as it is laid out.
    """
    from scaler.decision.params import params_of

    if demand.absent:  # metrics neither recorded nor simulated: left out of the decisions, as run() does
        policies = [p.model_copy(update={"metrics": [m for m in p.metrics if m.name not in demand.absent]})
                    for p in policies]
    first = policies[0]
    n = demand.load.shape[0]
    k = len(policies)
    p = side_by_side([params_of(q) for q in policies], n)
    w = model(world, first)
    times = np.ascontiguousarray(demand.times, dtype=np.float64)
    ticks, m, cols = len(times), len(first.metrics), k * n
    requested = np.ascontiguousarray(np.tile(demand.initial, k), dtype=np.float64)
    state = initial_state(p, requested, float(times[0]) if ticks else 0.0)
    ws = WorldState(requests=np.tile(requested, (w.delay, 1)), seen=np.full((w.lag + 1, m, cols), np.nan),
                    seen_ready=np.tile(requested, (w.lag + 1, 1)))
    totals = Totals(replica_hours=np.zeros(cols), violation_seconds=np.zeros(cols), no_data_seconds=np.zeros(cols),
                    scale_ups=np.zeros(cols, dtype=np.int64), scale_downs=np.zeros(cols, dtype=np.int64),
                    peak_replicas=requested.copy())
    rows = timeline(0, m, cols)  # totals only: the compiled loop takes a timeline it never writes
    names = [mm.name for mm in first.metrics]
    gauge_rows = [i for i, name in enumerate(names) if name in demand.gauges]
    replayed = np.zeros(m, dtype=np.bool_)
    replayed[gauge_rows] = True
    chunk = max(1, min(ticks, TICK_CELLS // max(cols, 1), max(ticks // 100, 64)))
    o = outputs(m, cols)
    for k0 in range(0, ticks, chunk):
        k1 = min(ticks, k0 + chunk)
        load = np.ascontiguousarray(np.tile(demand.load[:, k0:k1].T, (1, k)), dtype=np.float64)  # (ticks, columns)
        gauges = np.empty((m, k1 - k0 if gauge_rows else 0, cols))
        for i in gauge_rows:
            gauges[i] = np.tile(demand.gauges[names[i]][:, k0:k1].T, (1, k))
        run_chunk(p, w, k0, times[k0:k1], load, gauges, replayed, state, ws, totals, rows, False, False, o)
    return totals


def figures(policies: Sequence[Policy], demand: Demand, world: World) -> Figures:
    """Each policy's figures from one run of them side by side."""
    t = replay_side_by_side(policies, demand, world)
    n = demand.load.shape[0]
    per = [slice(k * n, (k + 1) * n) for k in range(len(policies))]
    return Figures(replica_hours=np.array([np.sum(t.replica_hours[s]) for s in per]),
                   violation_seconds=np.array([np.sum(t.violation_seconds[s]) for s in per]),
                   scale_ups=np.array([np.sum(t.scale_ups[s]) for s in per], dtype=np.int64),
                   scale_downs=np.array([np.sum(t.scale_downs[s]) for s in per], dtype=np.int64))


def chunks(count: int, targets: int, workers: int) -> list[range]:
    """Policies 0 .. count - 1 in consecutive groups, each one compiled run: as wide as COLUMNS allows, but at
    least one per worker. 200 policies on 1 target and 2 workers -> 2 chunks of 100; on 1,000 targets -> 200
    chunks of 1 (1,000 columns each)."""
    if count == 0:
        return []
    by_width = max(1, COLUMNS // max(targets, 1))
    size = max(1, min(by_width, math.ceil(count / max(workers, 1))))
    return [range(a, min(a + size, count)) for a in range(0, count, size)]


# ---------------------------------------------------------------------------------------------- where it runs


class Runner:
    """Where chunks run: in this process, a local process pool, or a Dask cluster. `figures(policies, demand,
    world)` gives every policy's figures in order, each chunk one compiled run; the demand goes to each worker
    once."""

    workers: int = 1

    def figures(self, policies: Sequence[Policy], demand: Demand, world: World) -> Figures:
        groups = chunks(len(policies), demand.load.shape[0], self.workers)
        if not groups:
            return Figures(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        return Figures.join(self._map([[policies[i] for i in g] for g in groups], demand, world))

    def _map(self, groups: list[list[Policy]], demand: Demand, world: World) -> list[Figures]:
        return [figures(g, demand, world) for g in groups]

    def describe(self) -> str:
        return "in this process"

    def close(self) -> None:
        pass

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# What the local pool's workers replay, set once per pool (inherited when forked, else sent once per worker).
_shared: dict[str, object] = {}


def _share(demand: Demand, world: World) -> None:
    _shared["demand"], _shared["world"] = demand, world


def _pooled(group: list[Policy]) -> Figures:
    return figures(group, _shared["demand"], _shared["world"])


class LocalPool(Runner):
    """A process pool on this machine, one process per CPU (concurrent.futures)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or cpus())

    def _map(self, groups: list[list[Policy]], demand: Demand, world: World) -> list[Figures]:
        if self.workers == 1 or len(groups) == 1:
            return super()._map(groups, demand, world)
        # Forked workers inherit the compiled code and the demand; elsewhere each starts afresh.
        method = "fork" if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(self.workers, len(groups)), mp_context=mp.get_context(method),
                                 initializer=_share, initargs=(demand, world)) as pool:
            return list(pool.map(_pooled, groups))

    def describe(self) -> str:
        return f"on {self.workers} local process{'es' if self.workers != 1 else ''}"


class DaskCluster(Runner):
    """Chunks as tasks on a Dask cluster (dask.distributed): the demand is scattered to every worker once.
    Workers need scaler installed, and are best started with one thread each (`dask worker ADDRESS
    --nthreads 1 --nworkers N`): the compiled loop holds the GIL."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ScalerError("--scheduler needs dask.distributed: pip install 'scaler[distributed]'") from None
        self.address = address
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise ScalerError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.workers = max(1, sum(self.client.nthreads().values()))

    def _map(self, groups: list[list[Policy]], demand: Demand, world: World) -> list[Figures]:
        if not self.client.nthreads():
            raise ScalerError(f"the Dask scheduler at {self.address} has no workers")
        # a key of its own (not one named after the content): two sweeps of the same demand never share it
        sent = self.client.scatter(demand, broadcast=True, hash=False)
        try:
            futures = self.client.map(figures, groups, demand=sent, world=world, pure=False)
            return self.client.gather(futures)
        finally:
            self.client.cancel(sent)

    def describe(self) -> str:
        return f"on the Dask cluster at {self.address} ({self.workers} worker threads)"

    def close(self) -> None:
        self.client.close()


def runner(scheduler: str | None = None, *, workers: int | None = None) -> Runner:
    """A Dask cluster when `scheduler` is given (tcp://host:port), else a local pool of `workers` processes
    (default: one per CPU)."""
    return DaskCluster(scheduler) if scheduler else LocalPool(workers)

