"""The decision state (scaler.decision.state.State) as bytes for a StateStore: versioned, matched by target name.

A blob is an npz archive (np.savez_compressed; read back with allow_pickle=False, so a blob can never run
code). It holds one JSON header (format version, the spec's fingerprint, the target names in column order,
the ring heads) and one array per state field. Anything wrong with a blob is not an error for the caller:
`decode` answers with a fresh `initial_state` and says why, so a controller that cannot read its old state
starts over exactly as it would on first boot (holding scale-down for one window) and logs the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from scaler.decision.kernel.codes import SEASONAL, TREND
from scaler.decision.params import Params, params_of
from scaler.decision.state import EVENTS, RECS, State, initial_state
from scaler.policy.model import Policy

FORMAT = 1  # bump when the layout below changes; blobs of another format are not read


class _Unreadable(Exception):
    """Why a blob cannot be used (turned into decode's reason string, never raised to the caller)."""


def fingerprint(policy: Policy, params: Params) -> str:
    """A short hash of everything that decides the state arrays' shapes and what their rows mean.

    Per metric, in order: its name and kind (a utilization window stores value x ready replicas, the others
    the raw value), its window kind and ring slots (a seasonal window: also its bucket, buckets and changes);
    per panic window its kind and slots; the history slots.
    Values that only change how the state is used (targets, thresholds, EWMA weight, rate limits) are left
    out, so tuning a policy keeps its state, while reordering or renaming metrics, or resizing a window,
    starts fresh instead of reading one metric's ring as another's.
    """
    shape = {
        "metrics": [
            [m.name, str(m.kind), m.window.type, int(slots)] + _seasonal_shape(params, i)
            for i, (m, slots) in enumerate(zip(policy.metrics, params.slots, strict=True))
        ],
        "panic": [["mean", int(slots)] for slots in params.panic_slots],
        "history": params.history_slots,
    }
    text = json.dumps(shape, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _seasonal_shape(params: Params, i: int) -> list[float | int]:
    """What else a seasonal window's rows mean: its bucket's seconds (bucket n sits in row n mod buckets, so 288
    rows of 5 minutes and 288 of 10 are other windows), its buckets and its changes; nothing for the others,
    whose fingerprint stays what it was."""
    if params.window[i] != SEASONAL:
        return []
    return [float(params.bucket[i]), int(params.buckets[i]), int(params.changes[i])]


def _trend(params: Params) -> np.ndarray:
    """Per metric: a trend window with a ring, whose running sums the state keeps."""
    return (params.window == TREND) & (params.slots > 1)


def _noisy(params: Params) -> np.ndarray:
    """Per metric: a max window with noisy_length, whose noise means the state keeps."""
    return params.noise_alpha > 0


def encode(policy: Policy, state: State, targets: Sequence[str]) -> bytes:
    """`state` for `targets` (its columns, in order) as bytes."""
    params = params_of(policy)
    names = [str(t) for t in targets]
    n = len(names)
    if len(set(names)) != n:
        raise ValueError("target names must be unique")
    if state.blind.shape != (n,):
        raise ValueError(f"state has {state.blind.shape[0]} target columns, {n} target names given")
    heads = {"recs": int(state.hist_heads[RECS]), "up": int(state.hist_heads[EVENTS]),
             "down": int(state.hist_heads[EVENTS])}
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint(policy, params),
        "targets": names,
        # [head, clean]: the second number is kept for the format and no longer read
        "smooth": [[int(h), 0] for h in state.heads],
        "panic": [[int(h), 0] for h in state.panic_heads],
        "heads": heads,
    }
    arrays: dict[str, np.ndarray] = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    trend, noisy = _trend(params), _noisy(params)
    for i, (start, slots) in enumerate(zip(params.ring_start, params.slots, strict=True)):
        arrays[f"smooth{i}"] = state.rings[start:start + slots]
        # A trend window's running sums: kept so a restart fits exactly the same line as the ticks before
        # it (unless the window adds them up afresh on its next tick anyway). A noisy max's means, so a
        # restart reads as far back as before it.
        if (trend[i] and not state.resync[i]) or noisy[i]:
            arrays[f"smooth{i}_sums"] = state.sums[i]
    for r, (start, slots) in enumerate(zip(params.panic_start, params.panic_slots, strict=True)):
        arrays[f"panic{r}"] = state.panic_rings[start:start + slots]
    arrays["recs_t"], arrays["recs_v"] = state.recs_t, state.recs_v
    arrays["up_t"], arrays["up_v"] = state.ev_t, state.up_v
    arrays["down_t"], arrays["down_v"] = state.ev_t, state.down_v
    for name in ("last_up", "last_change", "panic_until", "blind"):
        arrays[name] = getattr(state, name)
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


def decode(
    blob: bytes | None,
    policy: Policy,
    *,
    targets: Sequence[str],
    current: np.ndarray,
    now: float,
) -> tuple[State, str]:
    """The state for `targets` (in that order) from `blob`, and "" — or a fresh state and why.

    None (nothing saved yet) gives `initial_state(params, current, now)` and "". A blob that is corrupt, of
    another format or of another fingerprint gives the same fresh state and a reason to log.

    Columns are matched by name. A target in the blob keeps its columns exactly (a target in the blob but
    not in `targets` is dropped). A target new to the blob gets what `initial_state` gives it: empty
    windows, no events, no cooldowns, and `current` counted as a recommendation made at `now`, so it holds
    back scale-down for one down-stabilization window just as a fresh start does. All targets share one
    timestamp per history slot, so that recommendation needs a slot stamped `now`:

    - if the newest stored slot is stamped `now` (the blob was saved by a tick at this same time), it goes
      there, in the new target's column, which is empty;
    - otherwise one slot is pushed at `now` into the recommendation history only, empty (NaN: "recorded
      nothing") for every stored target.

    Why not the newest stored slot whatever its time: after a restart it may be minutes old, and the hold
    would end that much early (or at once). Why a push is safe for the stored targets: their values are
    untouched and NaN slots count for nothing; the push only evicts the ring's oldest slot. The ring holds
    two slots more than the longest look-back H needs (Policy.history_slots: ceil(H / interval) + 2), so
    while the stored ticks were at least one interval apart, its oldest slot is more than H old at any
    `now` from the last tick on (web: 10 slots at 15 s, oldest 135 s before the last tick, H = 120 s).
    Only ticks closer together than the interval could put a slot still inside a window there. The event
    histories and windows are not pushed, so rate limits and smoothing see exactly what they saw.
    Every target new -> exactly `initial_state`.
    """
    params = params_of(policy)
    names = [str(t) for t in targets]
    current = np.asarray(current, dtype=float)
    if len(set(names)) != len(names):
        raise ValueError("target names must be unique")
    if current.shape != (len(names),):
        raise ValueError(f"current has shape {current.shape}, expected ({len(names)},) for the targets given")
    if blob is None:
        return initial_state(params, current, now), ""
    try:
        header, arrays = _read(blob)
        stored = _check(policy, params, header, arrays)
    except _Unreadable as e:
        return initial_state(params, current, now), f"saved state not used: {e}"
    return _remap(params, header, arrays, stored, names, current, now), ""


def _read(blob: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and every array of a blob, or _Unreadable."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except Exception as e:
        # Damaged bytes fail anywhere in zipfile, zlib and numpy, and not with one type: flipping each byte
        # of a blob in turn raised BadZipFile (CRC mismatch), zlib.error, NotImplementedError (a "method"
        # byte), RuntimeError (an "encrypted" flag bit); truncation EOFError / OSError; a pickled (object)
        # array ValueError. Whatever the type, these bytes cannot be used, and the caller starts fresh.
        raise _Unreadable(f"unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(header, dict):
        raise _Unreadable("unreadable (header is not an object)")
    return header, arrays


def _check(policy: Policy, params: Params, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> int:
    """The number of stored targets, after checking format, fingerprint and every array's shape and dtype."""
    if header.get("format") != FORMAT:
        raise _Unreadable(f"format {header.get('format')!r}, this version reads format {FORMAT}")
    if header.get("fingerprint") != fingerprint(policy, params):
        raise _Unreadable(
            f"saved for another policy shape (fingerprint {header.get('fingerprint')!r}, now "
            f"{fingerprint(policy, params)!r}: metrics, windows or history length changed)"
        )
    names = header.get("targets")
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names) or len(set(names)) != len(names):
        raise _Unreadable("malformed target list")
    n = len(names)
    slots = params.history_slots
    want: dict[str, tuple[tuple[int, ...], Any]] = {}
    want.update({f"smooth{i}": ((int(s), n), np.float64) for i, s in enumerate(params.slots)})
    want.update({f"panic{i}": ((int(s), n), np.float64) for i, s in enumerate(params.panic_slots)})
    for name in ("recs", "up", "down"):
        want[f"{name}_t"] = ((slots,), np.float64)
        want[f"{name}_v"] = ((slots, n), np.float64)
    for name in ("last_up", "last_change", "panic_until"):
        want[name] = ((n,), np.float64)
    want["blind"] = ((n,), np.int64)
    # Running sums or noise means may be saved for any window: one that keeps none now (a noisy max made
    # plain) reads its ring as before and ignores them.
    optional = {f"smooth{i}_sums": ((2, n), np.float64) for i in range(len(params.window))}
    missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want) - set(optional))
    if missing or extra:
        raise _Unreadable(f"arrays missing {missing}, unexpected {extra}")
    want.update({k: v for k, v in optional.items() if k in arrays})
    for name, (shape, dtype) in want.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise _Unreadable(f"{name} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    try:
        rings = [(int(s), header["smooth"][i]) for i, s in enumerate(params.slots)]
        rings += [(int(s), header["panic"][i]) for i, s in enumerate(params.panic_slots)]
        ok = len(header["smooth"]) == len(params.slots) and len(header["panic"]) == len(params.panic_slots)
        ok = ok and all(_index(head, s) and _index(clean, s + 1) for s, (head, clean) in rings)
        ok = ok and all(_index(header["heads"][h], slots) for h in ("recs", "up", "down"))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise _Unreadable(f"malformed ring heads ({type(e).__name__})") from e
    if not ok:
        raise _Unreadable("ring heads out of range")
    if header["heads"]["up"] != header["heads"]["down"] or not np.array_equal(arrays["up_t"], arrays["down_t"],
                                                                             equal_nan=True):
        raise _Unreadable("scale-up and scale-down event histories out of step")
    return n


def _index(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def _remap(
    params: Params,
    header: dict[str, Any],
    arrays: dict[str, np.ndarray],
    stored: int,
    names: list[str],
    current: np.ndarray,
    now: float,
) -> State:
    """The State for `names` from checked arrays: stored columns by name, new ones as initial_state has them."""
    where = {name: j for j, name in enumerate(header["targets"])}
    src = np.array([where.get(name, -1) for name in names], dtype=np.int64)
    new = src < 0
    if len(names) and new.all():
        return initial_state(params, current, now)
    kept = ~new

    def cols(a: np.ndarray, fill: float | int) -> np.ndarray:
        """The stored columns in the order of `names`; a new target's column is `fill` (a new array either
        way, C-ordered, as the compiled code writes into it)."""
        out = np.full(a.shape[:-1] + (len(names),), fill, dtype=a.dtype)
        out[..., kept] = a[..., src[kept]]
        return out

    m = params.slots.shape[0]
    sums = np.full((m, 2, len(names)), np.nan)
    trend = _trend(params)
    resync = np.zeros(m, dtype=np.bool_)
    heads = np.array([h for h, _ in header["smooth"]], dtype=np.int64)
    for i in range(m):
        # A new target's running sums are NaN too (its window is not full), as they would be had it started
        # with the others; sums not saved are added up afresh on the next tick.
        if f"smooth{i}_sums" in arrays:
            sums[i] = cols(arrays[f"smooth{i}_sums"], np.nan)
        resync[i] = trend[i] and (f"smooth{i}_sums" not in arrays or heads[i] == params.slots[i] - 1)
    rings = np.concatenate([cols(arrays[f"smooth{i}"], np.nan) for i in range(m)]) if m else \
        np.empty((0, len(names)))
    panic = [cols(arrays[f"panic{r}"], np.nan) for r in range(params.panic_slots.shape[0])]
    recs_t, recs_v = np.array(arrays["recs_t"]), cols(arrays["recs_v"], np.nan)
    hist_heads = np.array([header["heads"]["recs"], header["heads"]["up"]], dtype=np.int64)
    state = State(
        rings=rings,
        heads=heads,
        sums=sums,
        resync=resync,
        panic_rings=np.concatenate(panic) if panic else np.empty((0, len(names))),
        panic_heads=np.array([h for h, _ in header["panic"]], dtype=np.int64),
        recs_t=recs_t,
        recs_v=recs_v,
        ev_t=np.array(arrays["up_t"]),
        up_v=cols(arrays["up_v"], np.nan),
        down_v=cols(arrays["down_v"], np.nan),
        hist_heads=hist_heads,
        last_up=cols(arrays["last_up"], np.nan),
        last_change=cols(arrays["last_change"], np.nan),
        panic_until=cols(arrays["panic_until"], np.nan),
        blind=cols(arrays["blind"], 0),
    )
    if new.any():
        newest = (hist_heads[RECS] - 1) % params.history_slots
        if recs_t[newest] == now:
            recs_v[newest, new] = current[new]
        else:
            state = state.with_recommendation(now, np.where(new, current, np.nan))
    return state
