"""The simulated world a replay runs against: demand from the recording, replicas that take time to start,
metrics that arrive late, latency from a queueing model, and errors when demand exceeds capacity."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field

from scaler.policy.model import Slo
from scaler.simulate.closedloop import world_metrics
from scaler.units import Seconds
from scaler.yamlio import Strict

# p95 of an exponential sojourn time is ln(20) = 3.0 times its mean.
P95_FACTOR = math.log(20.0)


class World(Strict):
    """Model parameters, reported in summary.json so a result can be reproduced."""

    # Both size rings of one row per tick: an hour is plenty for a replica to start or a metric to arrive.
    startup_delay: Seconds = Field(60.0, le=3600, description="Seconds from requesting a replica to it serving")
    lag: Seconds = Field(30.0, le=3600, description="Seconds the controller's view trails reality (a rate window)")
    service_time: Seconds = Field(
        0.02, description="Mean seconds one request takes on an idle replica (sets the latency curve)"
    )
    latency_cap: Seconds = Field(10.0, description="Latency of a saturated replica (a client timeout)")
    recorded_replicas: float = Field(
        4.0, gt=0, description="Replicas serving when a utilization recording was made (if it has no column)"
    )
    capacity: float | None = Field(
        None, gt=0, description="Count recordings: demand one replica serves at 100 % (per sample)"
    )
    load: str | None = Field(None, description="Recorded metric that drives demand (default: inferred)")
    sample_timing: Literal["hold", "interpolate"] = Field(
        "hold", description="Coarse samples between ticks: hold each until the next, or interpolate linearly")
    slo: Slo | None = Field(
        None, description="What counts as a violation for every policy of the run (default: each policy's own; "
        "`scaler simulate` sets the first policy's, or --slo, so compared policies are judged alike)")

    def latency(self, rho: np.ndarray) -> np.ndarray:
        """p95 latency (s) of one replica at utilization rho, as an M/M/1 queue: S * ln 20 / (1 - rho).

        20 ms service: rho 0.5 -> 0.12 s, 0.7 -> 0.20 s, 0.8 -> 0.30 s, 0.9 -> 0.60 s; >= cap -> cap.
        (The replay's own formula, scaler.simulate.closedloop.latency, applied to every element.)
        """
        return self._metrics(rho)[0]

    def error_rate(self, rho: np.ndarray) -> np.ndarray:
        """Fraction of requests that fail: the share of demand above capacity (rho 1.25 -> 0.2)."""
        return self._metrics(rho)[1]

    def _metrics(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rho = np.asarray(rho, dtype=np.float64)
        flat = np.ascontiguousarray(rho.ravel())
        lat, err = np.empty_like(flat), np.empty_like(flat)
        world_metrics(self.service_time * P95_FACTOR, float(self.latency_cap), flat, lat, err)
        return lat.reshape(rho.shape), err.reshape(rho.shape)


def busy_scale(values: np.ndarray, *, busy: float = 7.0, count: bool = False) -> dict[str, float]:
    """World settings that make a recording's 99th-percentile load `busy` replicas of work.

    The default 7 is 10 replicas at 70 %, the web policy's ceiling. A CPU % series gets `recorded_replicas`
    (p99 of 53 % -> 7 / 0.53 = 13.1 replicas); a count series gets a per-replica `capacity` (p99 / 7). One
    rule for every trace, so none is tuned by hand.
    """
    p99 = float(np.nanpercentile(values, 99))
    return {"capacity": p99 / busy} if count else {"recorded_replicas": busy / (p99 / 100.0)}



class Model(NamedTuple):
    """A World and a policy's SLO as the compiled closed loop reads them (NaN: no SLO of that kind)."""

    interval: float
    delay: int  # ticks from request to serving (>= 1)
    lag: int  # ticks the controller's view trails the world
    latency_scale: float  # service time x ln 20: p95 seconds = latency_scale / (1 - rho)
    latency_cap: float
    slo_latency: float
    slo_error_rate: float
    slo_utilization: float


def model(world: World, policy) -> Model:
    """The compiled loop's view of `world` for `policy`: its interval, and the run's SLO (else the policy's)."""
    dt = float(policy.interval)
    slo = world.slo if world.slo is not None else policy.slo
    nan = math.nan
    return Model(
        interval=dt,
        # A replica requested at the end of tick j serves from tick j + delay (60 s / 15 s -> 4).
        delay=max(1, int(math.ceil(world.startup_delay / dt))) if world.startup_delay > 0 else 1,
        lag=int(round(world.lag / dt)),
        latency_scale=world.service_time * P95_FACTOR,
        latency_cap=float(world.latency_cap),
        slo_latency=nan if slo.latency is None else float(slo.latency),
        slo_error_rate=nan if slo.error_rate is None else float(slo.error_rate),
        slo_utilization=nan if slo.utilization is None else float(slo.utilization),
    )
