"""One step of the pipeline over (targets,) arrays, on its own: the entry points scaler.decision.steps uses to
run a step by itself (the tick runs the same scalar pieces inline)."""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.behavior import clamp_step, legacy_one, precheck_one, stabilize_one
from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, error_model="numpy")
def stabilize_all(current, proposal, low, high):
    out = np.empty_like(current)
    for j in range(current.shape[0]):
        p = proposal[j]
        out[j] = stabilize_one(current[j], p, low[j], high[j]) if p == p else math.nan
    return out


@njit(cache=CACHE, error_model="numpy")
def clamp_all(desired, current, up, down, lo, hi):
    value = np.empty_like(desired)
    mask = np.zeros(desired.shape[0], dtype=np.int64)
    for j in range(desired.shape[0]):
        value[j], mask[j] = clamp_step(desired[j], current[j], up[j], down[j], lo[j], hi[j])
    return value, mask


@njit(cache=CACHE, error_model="numpy")
def precheck_all(current, lo, hi):
    forced = np.empty_like(current)
    mask = np.zeros(current.shape[0], dtype=np.int64)
    for j in range(current.shape[0]):
        forced[j], mask[j] = precheck_one(current[j], lo[j], hi[j])
    return forced, mask


@njit(cache=CACHE, error_model="numpy")
def legacy_all(proposal, current, high, lo, hi):
    value = np.empty_like(proposal)
    mask = np.zeros(proposal.shape[0], dtype=np.int64)
    for j in range(proposal.shape[0]):
        value[j], mask[j] = legacy_one(proposal[j], high[j], current[j], lo[j], hi[j])
    return value, mask
