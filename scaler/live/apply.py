"""Step 3 of a tick: write the counts decided (within each target's own bounds), and say what was written.

Only what was actually written is committed to the decision state afterwards (`applied`): a write that
failed, one never made (a dry run, a lost lease) or a count a provider's bounds changed count as such.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from scaler.errors import PermanentError, ProviderError
from scaler.live.observe import Observation
from scaler.targets.base import Replicas, ScaleTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetOutcome:
    label: str
    id: str
    current: int | None  # None: the read failed
    ready: int | None
    desired: int  # the count asked of the target (the decision, within its own bounds)
    written: bool
    reasons: int
    error: str | None = None
    write_error: ProviderError | None = None  # the write's own error, for telemetry and notifications


@dataclass(frozen=True)
class Applied:
    outcomes: tuple[TargetOutcome, ...]
    applied: np.ndarray  # (targets,) the count written, NaN where nothing was


def provider_bounds(desired: np.ndarray, reads: Sequence[Replicas | ProviderError]) -> np.ndarray:
    """Clamp into each target's own bounds (an ASG's MinSize/MaxSize) where it has them."""
    out = np.asarray(desired, dtype=float).copy()
    for j, r in enumerate(reads):
        if isinstance(r, Replicas):
            if r.max is not None and out[j] > r.max:
                out[j] = r.max
            if r.min is not None and out[j] < r.min:
                out[j] = r.min
    return out


def apply(
    targets: Sequence[ScaleTarget],
    labels: Sequence[str],
    seen: Observation,
    desired: np.ndarray,
    reasons: np.ndarray,
    *,
    write: bool,
    still_leader: Callable[[], bool],
    call: Callable,
    pool: Executor,
) -> Applied:
    """Write every target that was read and whose count changes (only when `write`: never in a dry run);
    ask the lease again right before each write, as leadership may have lapsed during the tick. One
    failure costs one target."""
    final = provider_bounds(desired, seen.reads)
    todo = [j for j, r in enumerate(seen.reads) if isinstance(r, Replicas) and final[j] != r.desired] if write else []

    def one(j: int) -> ProviderError | None:
        if not still_leader():
            return PermanentError("lost the lease before writing", code="NotLeader")
        try:
            call(lambda: targets[j].write(int(final[j])))
            return None
        except ProviderError as e:
            return e
        except Exception as e:  # an adapter bug must cost one target, not the tick
            log.exception("writing %s failed", targets[j].id)
            return PermanentError(f"{type(e).__name__}: {e}", code=type(e).__name__)

    failed = dict(zip(todo, pool.map(one, todo), strict=True))
    applied = np.full(len(targets), np.nan)
    outcomes = []
    for j, (label, t, r) in enumerate(zip(labels, targets, seen.reads, strict=True)):
        read_ok = isinstance(r, Replicas)
        err = failed.get(j)
        written = j in failed and err is None
        if written:
            applied[j] = final[j]
        error = str(err) if err is not None else (None if read_ok else f"read failed: {r}")
        outcomes.append(TargetOutcome(
            label=label, id=t.id, current=int(seen.current[j]) if read_ok else None,
            ready=int(seen.ready[j]) if read_ok else None, desired=int(final[j]), written=written,
            reasons=int(reasons[j]), error=error, write_error=err))
    return Applied(tuple(outcomes), applied)
