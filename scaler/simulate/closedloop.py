"""The closed loop compiled: the simulated world and the decision, one tick after another, for a chunk of ticks.

scaler.simulate.replay lays the recording out as demand and calls `run_chunk` for successive chunks; each
tick the world serves the demand with the replicas that are ready, shows the controller its metrics late,
the same compiled `tick` the live loop runs decides, and the world applies the decision (`commit`
records it as written, as the live loop records a successful write).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import ERROR_RATE, LATENCY, SEASONAL, UTILIZATION
from scaler.decision.kernel.tick import Outputs, commit, tick

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


class WorldState(NamedTuple):
    """What the simulated world remembers between ticks.

    requests: ring (delay, targets), row k % delay the count requested at tick k - delay; a replica
    requested at tick j serves from tick j + delay, and with the newest removed first, ready = the
    smallest request of the last `delay` ticks (60 s at 15 s -> 4). seen / seen_ready: rings (lag + 1,
    ...) of what the world showed at each tick; the controller reads the one from `lag` ticks ago,
    metrics and the ready count together (pairing old utilization with today's ready count would count
    load against replicas that were not serving yet).
    """

    requests: np.ndarray  # (delay, targets)
    seen: np.ndarray  # (lag + 1, metrics, targets)
    seen_ready: np.ndarray  # (lag + 1, targets)


class Totals(NamedTuple):
    """Per target, summed over the ticks; per seasonal window and target, its latest correlation and how often
    it asked, and per noisy max how often it was noisy (filled when the arrays are (metrics, targets); a caller
    that needs none of it leaves them empty)."""

    replica_hours: np.ndarray
    violation_seconds: np.ndarray  # SLO breached
    no_data_seconds: np.ndarray  # a gap in the recording
    scale_ups: np.ndarray  # int64
    scale_downs: np.ndarray  # int64
    peak_replicas: np.ndarray
    # (metrics, targets) ticks a seasonal window asked, or a max with noisy_length read its long span
    asked: np.ndarray = np.zeros((0, 0), dtype=np.int64)
    correlation: np.ndarray = np.zeros((0, 0))  # (metrics, targets) its correlation at the period, the latest


class Timeline(NamedTuple):
    """Per tick and target (ticks, targets), per metric (ticks, metrics, targets). `decisions` holds every
    output of each tick's decision (scaler.decision.kernel.tick.Outputs with a ticks axis first) when a
    run is recorded in detail (to explain it); otherwise only its desired, smoothed and reasons arrays
    are filled and the others are empty."""

    replicas: np.ndarray  # the count each target had when the tick decided
    ready: np.ndarray  # replicas serving in the world (the controller sees them `lag` late)
    demand: np.ndarray  # replica-equivalents of work; NaN = a gap in the recording
    observed: np.ndarray  # what the controller read (lag ticks old)
    slo_ok: np.ndarray  # int8: 1 ok, 0 breach, -1 unknown (no demand recorded)
    decisions: Outputs

    @property
    def desired(self) -> np.ndarray:
        """(ticks, targets) the count decided (and applied) each tick."""
        return self.decisions.desired

    @property
    def smoothed(self) -> np.ndarray:
        """(ticks, metrics, targets) the metrics after the windows."""
        return self.decisions.smoothed

    @property
    def reasons(self) -> np.ndarray:
        """(ticks, targets) reason masks."""
        return self.decisions.reasons


@njit(cache=CACHE, error_model="numpy")
def latency(scale, cap, rho):
    """p95 latency (s) of one replica at utilization rho, as an M/M/1 queue: scale / (1 - rho), where
    scale = service time x ln 20 (the p95 of an exponential sojourn is ln 20 x its mean); a saturated
    replica (rho >= 1) sits at `cap`, a client timeout. 20 ms service: rho 0.5 -> 0.12 s, 0.8 -> 0.30 s."""
    if rho != rho:
        return math.nan
    lat = scale / max(1.0 - rho, 1e-12)
    if rho >= 1.0:
        lat = cap
    return min(lat, cap)


@njit(cache=CACHE, error_model="numpy")
def error_rate(rho):
    """Share of requests that fail: the demand above capacity (rho 1.25 -> 0.2)."""
    if rho != rho:
        return math.nan
    return 1.0 - 1.0 / max(rho, 1.0)


@njit(cache=CACHE, error_model="numpy")
def world_metrics(scale, cap, rho, lat, err):
    """latency() and error_rate() for every element of rho (1-d), into lat and err."""
    for j in range(rho.shape[0]):
        lat[j] = latency(scale, cap, rho[j])
        err[j] = error_rate(rho[j])


@njit(cache=CACHE, error_model="numpy")
def run_chunk(p, w, k0, times, load, gauges, replayed, s, ws, totals, tl, record, detail, o):
    """Ticks k0 .. k0 + len(load) - 1 of the closed loop, updating the decision state `s`, the world `ws`
    and the totals in place; timeline rows are written at absolute tick numbers when `record` (every
    decision output too when `detail`). `o` is one tick's Outputs, reused.

    p: the policy (Params); w: the world and SLO (scaler.simulate.world.Model); load: (ticks, targets)
    demand in replica-equivalents (NaN: a gap in the recording); gauges: (metrics, ticks, targets)
    recorded values of the metrics marked in `replayed` (bool, (metrics,)): gauges, and utilization metrics
    that are not demand (memory); the world simulates the others.
    """
    ticks, n = load.shape
    m = p.kind.shape[0]
    seasonal = totals.asked.shape[0] == m and totals.asked.shape[1] == n and totals.correlation.shape == (m, n)
    d, lag = w.delay, w.lag
    ring_len = lag + 1
    dt = w.interval
    hour = dt / 3600.0
    requests, seen, seen_ready = ws.requests, ws.seen, ws.seen_ready
    ready = np.empty(n)
    current = np.empty(n)
    rho = np.empty(n)
    lat, err, util = np.empty(n), np.empty(n), np.empty(n)
    unseen = np.full((m, n), math.nan)
    for c in range(ticks):
        k = k0 + c
        # the world now: ready replicas, utilization rho = demand / ready, and the true metrics
        for j in range(n):
            r = requests[0, j]
            for i in range(1, d):
                r = min(r, requests[i, j])
            ready[j] = r
            current[j] = requests[(k - 1 + d) % d, j]
            x = load[c, j]
            if r > 0:
                rho[j] = x / r
            else:
                rho[j] = math.inf if x > 0 else 0.0
        # latency and error rate of every target once (the metrics and the SLO check both read them);
        # NaN where the recording has a gap, so no metric at all is seen there
        for j in range(n):
            q = rho[j] if load[c, j] == load[c, j] else math.nan
            lat[j] = latency(w.latency_scale, w.latency_cap, q)
            err[j] = error_rate(q)
            util[j] = min(q, 1.0) * 100.0 if q == q else math.nan
        truth = seen[k % ring_len]
        for i in range(m):
            kind = p.kind[i]
            if replayed[i]:  # gauges, and utilization that is not demand (memory): as recorded
                for j in range(n):
                    truth[i, j] = gauges[i, c, j] if load[c, j] == load[c, j] else math.nan
            elif kind == UTILIZATION:
                truth[i] = util
            elif kind == LATENCY:
                truth[i] = lat
            elif kind == ERROR_RATE:
                truth[i] = err
            else:  # a gauge is always replayed; kept for a caller that marks none
                for j in range(n):
                    truth[i, j] = gauges[i, c, j] if load[c, j] == load[c, j] else math.nan
        seen_ready[k % ring_len] = ready
        observed = seen[(k - lag) % ring_len] if k >= lag else unseen
        view = seen_ready[(k - lag) % ring_len] if k >= lag else ready
        # the decision, as the live loop makes it; the world applies all of it
        tick(p, s, observed, current, view, times[c], o)
        desired = o.desired
        commit(s, times[c], current, desired)
        if seasonal:
            for i in range(m):
                if p.window[i] == SEASONAL:
                    for j in range(n):
                        if not o.no_opinion[i, j] and o.smoothed[i, j] == o.smoothed[i, j]:
                            totals.asked[i, j] += 1
                        totals.correlation[i, j] = o.correlation[i, j]
                elif p.noise_alpha[i] > 0:
                    for j in range(n):
                        if o.noise[i, j] > p.noise_above[i]:
                            totals.asked[i, j] += 1
        requests[k % d] = desired
        # what it cost and how the world fared this tick
        for j in range(n):
            x = load[c, j]
            known = x == x
            breach = False
            if known:
                if lat[j] > w.slo_latency or err[j] > w.slo_error_rate or rho[j] * 100.0 > w.slo_utilization:
                    breach = True  # (no SLO of a kind is NaN, which no value exceeds)
            else:
                totals.no_data_seconds[j] += dt
            if breach:
                totals.violation_seconds[j] += dt
            now_count = desired[j]
            totals.replica_hours[j] += now_count * hour
            if now_count > current[j]:
                totals.scale_ups[j] += 1
            elif now_count < current[j]:
                totals.scale_downs[j] += 1
            if now_count > totals.peak_replicas[j]:
                totals.peak_replicas[j] = now_count
            if record:
                tl.replicas[k, j] = current[j]
                tl.ready[k, j] = ready[j]
                tl.demand[k, j] = x
                tl.slo_ok[k, j] = (0 if breach else 1) if known else -1
                tl.decisions.desired[k, j] = now_count
                tl.decisions.reasons[k, j] = o.reasons[j]
                for i in range(m):
                    tl.observed[k, i, j] = observed[i, j]
                    tl.decisions.smoothed[k, i, j] = o.smoothed[i, j]
        if record and detail:
            _keep(tl.decisions, k, o)


@njit(cache=CACHE, error_model="numpy")
def _keep(rows, k, o):
    """Every output of the tick as row k of the detailed timeline."""
    rows.asks[k] = o.asks
    rows.ask_ratio[k] = o.ask_ratio
    rows.ask_base[k] = o.ask_base
    rows.raw[k] = o.raw
    rows.low[k] = o.low
    rows.high[k] = o.high
    rows.stabilized[k] = o.stabilized
    rows.up_limit[k] = o.up_limit
    rows.down_limit[k] = o.down_limit
    rows.limited[k] = o.limited
    rows.correlation[k] = o.correlation
    rows.season[k] = o.season
    rows.level_ratio[k] = o.level_ratio
    rows.headroom[k] = o.headroom
    rows.no_opinion[k] = o.no_opinion
    rows.noise[k] = o.noise
