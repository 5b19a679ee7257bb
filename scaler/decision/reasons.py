"""Why a decision came out as it did: one bit per pipeline step that changed (or held) the number."""

from __future__ import annotations

from enum import IntFlag

import numpy as np


class Reason(IntFlag):
    """Bits in the per-target reason mask. Names follow HPA's condition reasons where one exists."""

    NO_DATA = 1 << 0  # a metric had no fresh sample: hold (never scale down on missing data)
    FALLBACK = 1 << 1  # blind for failure_threshold ticks: raised to fallback.replicas
    IN_BAND = 1 << 2  # inside the hysteresis band / HPA tolerance: hold
    METRIC_UP = 1 << 3  # a metric above its up threshold proposed more replicas
    METRIC_DOWN = 1 << 4  # every metric below its down threshold: proposed fewer
    SCALE_UP_STABILIZED = 1 << 5  # a lower recommendation in the up window held it back
    SCALE_DOWN_STABILIZED = 1 << 6  # a higher recommendation in the down window held it back
    SCALE_UP_LIMIT = 1 << 7  # an up rate limit (pods/percent per period) capped it
    SCALE_DOWN_LIMIT = 1 << 8  # a down rate limit capped it
    TOO_MANY_REPLICAS = 1 << 9  # clamped to replicas.max
    TOO_FEW_REPLICAS = 1 << 10  # clamped to replicas.min
    SCALE_UP_COOLDOWN = 1 << 11  # too soon after the last scale-up
    SCALE_DOWN_COOLDOWN = 1 << 12  # too soon after the last scale action
    PANIC = 1 << 13  # short-window burst: scaled on the panic window, scale-down blocked
    DISABLED = 1 << 14  # HPA: current is 0 and min > 0, autoscaling is off
    OUT_OF_RANGE = 1 << 15  # current outside [min, max]: moved to the bound without reading metrics
    PARTIAL_DATA_UP = 1 << 16  # some metrics missing but the rest ask for more: scale up anyway (HPA)


def describe(mask: int) -> str:
    """'SCALE_UP_LIMIT+TOO_MANY_REPLICAS' for a mask; '' for 0."""
    return "+".join(r.name for r in Reason if mask & r)  # type: ignore[misc]


def describe_all(masks: np.ndarray) -> list[str]:
    """describe() for every element, computed once per distinct mask."""
    uniq, inverse = np.unique(masks.astype(np.int64), return_inverse=True)
    names = [describe(int(u)) for u in uniq]
    return [names[i] for i in inverse.ravel()]
