"""The one decision path: observations -> smoothing -> proposal -> stabilize -> rate limit -> clamp, with reasons.

`decide` is a pure function of (params, state, observations, current replicas, now) over arrays shaped
(targets,): the live loop and `scaler simulate` both run it (the simulator through the same compiled
tick); they differ only in where observations come from and what is written. It proposes: the Decision
carries the new state and every value the steps used, and the caller commits what it actually wrote with
`decision.state.with_applied(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaler.decision.kernel.tick import Outputs, outputs, tick
from scaler.decision.params import Params
from scaler.decision.state import State


@dataclass(frozen=True)
class Decision:
    """The outcome for every target, with each step's value so a decision can be explained from the numbers
    it used. `state` is the proposed state: commit what was written with `state.with_applied`."""

    state: State
    observed: np.ndarray  # (metrics, targets) what was read this tick (NaN = no data)
    current: np.ndarray  # (targets,) the count each target had
    ready: np.ndarray  # (targets,) how many of them served (what utilization asks scale from)
    steps: Outputs  # every step's values (scaler.decision.kernel.tick.Outputs)

    @property
    def desired(self) -> np.ndarray:
        """(targets,) int64: the count proposed."""
        return self.steps.desired.astype(np.int64)

    @property
    def reasons(self) -> np.ndarray:
        """(targets,) int64 mask of scaler.decision.reasons.Reason."""
        return self.steps.reasons

    @property
    def smoothed(self) -> np.ndarray:
        return self.steps.smoothed

    @property
    def proposals(self) -> np.ndarray:
        """(metrics, targets) replicas each metric asks for (NaN = none)."""
        return self.steps.asks

    @property
    def proposal(self) -> np.ndarray:
        """(targets,) after the band / HPA's validity rule and the fallback."""
        return self.steps.raw

    @property
    def stabilized(self) -> np.ndarray:
        return self.steps.stabilized


def decide(
    params: Params,
    state: State,
    observed: np.ndarray,
    *,
    current: np.ndarray,
    now: float,
    ready: np.ndarray | None = None,
    reuse_state: bool = False,
) -> Decision:
    """One tick for every target of one policy.

    observed: (metrics, targets) latest raw samples, NaN where a read failed or was stale.
    current: replicas the target has now (read every tick; someone else may have changed them).
    ready: replicas serving traffic (defaults to current); utilization proposals scale from it.
    reuse_state: write into `state`'s arrays instead of copying them; the caller must not use `state`
    again.
    """
    observed = np.ascontiguousarray(observed, dtype=np.float64)
    current = np.ascontiguousarray(current, dtype=np.float64)
    ready = current if ready is None else np.ascontiguousarray(ready, dtype=np.float64)
    m, n = observed.shape
    new = state if reuse_state else state.copy()
    o = outputs(m, n)
    tick(params, new, observed, current, ready, float(now), o)
    return Decision(state=new, observed=observed, current=current, ready=ready, steps=o)


def warm() -> float:
    """Compile the decision path, or load it from numba's on-disk cache, so the first real tick does not pay
    for it (compiling takes about half a minute, once per machine and version; loading, under a second).
    Every policy runs the same compiled code, so one small decision warms it for all. Returns the seconds
    it took."""
    import time

    from scaler import defaults
    from scaler.decision.params import params_of
    from scaler.decision.state import initial_state
    from scaler.policy.load import load_policy

    start = time.perf_counter()
    params = params_of(load_policy(defaults.DEFAULT_POLICY))
    one = np.ones(1)
    d = decide(params, initial_state(params, one, 0.0), np.full((params.kind.shape[0], 1), np.nan), current=one,
               now=15.0)
    d.state.with_applied(15.0, one, one)
    return time.perf_counter() - start
