"""The decision-state codec: exact round trips, decisions that continue unchanged after a save and load,
columns matched by target name, and every unusable blob turned into a fresh start with a reason."""

import io
import json
import re

import numpy as np
import pytest

from scaler.decision import statecodec
from scaler.decision.decide import Decision, decide
from scaler.decision.kernel.codes import GAUGE
from scaler.decision.params import params_of
from scaler.decision.state import RECS, State, initial_state
from scaler.policy.load import load_policy
from scaler.policy.model import Policy
from tests.conftest import ROOT, make_policy

T0 = 1_700_000_000.0


def web() -> Policy:
    """max and last windows, a 2-minute down stabilization, percent and pods limits, panic."""
    return load_policy(ROOT / "tests" / "data" / "web-fixed.yaml")


def mixed() -> Policy:
    """Every window type, a gauge, fallback, cooldowns and panic: every field of State gets written."""
    return Policy.model_validate({
        "name": "mixed", "replicas": {"min": 2, "max": 30},
        "metrics": [
            {"name": "cpu", "target": 65, "scale_up_above": 75, "scale_down_below": 40,
             "window": {"type": "percentile", "length": 90, "q": 90}},
            {"name": "p95", "kind": "latency", "target": 0.3, "window": {"type": "mean", "length": 60}},
            {"name": "err", "kind": "error_rate", "target": 0.01, "window": {"type": "ewma", "half_life": 30}},
            {"name": "queue", "kind": "gauge", "target": 100, "window": {"type": "max", "length": 45}},
            {"name": "cpu_trend", "target": 65, "window": {"type": "trend", "length": 60, "lead": 90}},
        ],
        "behavior": {
            "scale_up": {"stabilization": 30, "cooldown": 30, "policies": [
                {"type": "pods", "value": 2, "period": 60}, {"type": "percent", "value": 30, "period": 60}]},
            "scale_down": {"stabilization": 90, "cooldown": 45, "policies": [
                {"type": "pods", "value": 1, "period": 30}, {"type": "percent", "value": 20, "period": 30}]},
        },
        "fallback": {"failure_threshold": 3, "replicas": 12},
        "panic": {"threshold": 1.5, "window": 30, "hold": 45},
    })


def hpa() -> Policy:
    return load_policy(ROOT / "policies" / "hpa-default.yaml")


POLICIES = [web, mixed, make_policy, hpa]
POLICY_IDS = ["web", "mixed", "make_policy", "hpa-default"]

def observe(policy: Policy, rng: np.random.Generator, n: int) -> np.ndarray:
    """One tick of observations (metrics, n) spread around each metric's target (a gauge's around 6
    replicas' worth), with about 10 % of reads missing: enough to cross every band both ways."""
    p = params_of(policy)
    scale = (np.where(p.kind == GAUGE, 6.0, 1.0) * p.target)[:, None]
    obs = scale * rng.gamma(4.0, 0.25, (len(p.kind), n))
    obs[rng.random(obs.shape) < 0.1] = np.nan
    return obs


def run(policy: Policy, state: State, current: np.ndarray, observations: list[np.ndarray], times: list[float],
        *, reuse: bool = False):
    """Ticks as the loop runs them (every decision written and committed as written): the decisions and
    the last state."""
    params = params_of(policy)
    decisions = []
    for obs, now in zip(observations, times, strict=True):
        d = decide(params, state, obs, current=current, now=now, reuse_state=reuse)
        decisions.append(d)
        state = d.state.with_applied(now, current, d.desired, reuse=reuse)
        current = d.desired.astype(float)
    return decisions, state, current


def arrays_equal(a, b) -> bool:
    return np.array_equal(a, b, equal_nan=True) and np.asarray(a).dtype == np.asarray(b).dtype


def assert_same_state(a: State, b: State) -> None:
    """Every array equal (NaN = NaN). A trend window's running sums count only while they are in use: one
    that adds them up afresh on its next tick (resync) need not carry them."""
    for name in State._fields:
        if name != "sums":
            assert arrays_equal(getattr(a, name), getattr(b, name)), name
    for i in np.flatnonzero(~a.resync):
        assert arrays_equal(a.sums[i], b.sums[i]), f"sums of metric {i}"


def assert_same_decision(a: Decision, b: Decision, cols_a=slice(None), cols_b=slice(None), *, where="") -> None:
    """Every figure of two decisions equal, optionally for some columns of each."""
    for name in ("observed", "current", "ready"):
        assert arrays_equal(getattr(a, name)[..., cols_a], getattr(b, name)[..., cols_b]), f"{where} {name}"
    for name in a.steps._fields:
        xa, xb = getattr(a.steps, name), getattr(b.steps, name)
        assert arrays_equal(xa[..., cols_a], xb[..., cols_b]), f"{where} {name}"


def ticked(policy_fn, n=3, ticks=9, seed=3):
    """A policy and its state after `ticks` ticks over n targets, with the current counts and next tick time."""
    policy = policy_fn()
    rng = np.random.default_rng(seed)
    current = np.linspace(3.0, 9.0, n).round()
    state = initial_state(params_of(policy), current, T0)
    times = [T0 + policy.interval * (k + 1) for k in range(ticks)]
    _, state, current = run(policy, state, current, [observe(policy, rng, n) for _ in times], times)
    return policy, state, current, times[-1] + policy.interval


def take(state: State, cols: list[int]) -> State:
    """The state of some targets (columns), in the order given."""
    per_target = {"rings", "sums", "panic_rings", "recs_v", "up_v", "down_v", "last_up", "last_change",
                  "panic_until", "blind"}
    return State(*(a[..., cols] if name in per_target else a for name, a in zip(State._fields, state, strict=True)))


# -- round trip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy_fn", POLICIES, ids=POLICY_IDS)
def test_round_trip_is_exact(policy_fn):
    policy, state, current, now = ticked(policy_fn)
    blob = statecodec.encode(policy, state, ["a", "b", "c"])

    back, why = statecodec.decode(blob, policy, targets=["a", "b", "c"], current=current, now=now)

    assert why == ""
    assert_same_state(back, state)


def test_round_trip_of_a_fresh_state_and_of_no_targets():
    policy = web()
    fresh = initial_state(params_of(policy), np.array([4.0, 5.0]), T0)
    back, why = statecodec.decode(statecodec.encode(policy, fresh, ["a", "b"]), policy, targets=["a", "b"],
                                  current=np.array([9.0, 9.0]), now=T0 + 999)
    assert why == ""
    assert_same_state(back, fresh)  # `current` and `now` only matter for targets the blob lacks

    none = initial_state(params_of(policy), np.array([]), T0)
    back, why = statecodec.decode(statecodec.encode(policy, none, []), policy, targets=[], current=np.array([]),
                                  now=T0)
    assert why == "" and back.blind.shape == (0,)


def test_nothing_saved_yet_is_a_fresh_start_not_a_problem():
    policy = web()
    state, why = statecodec.decode(None, policy, targets=["a"], current=np.array([4.0]), now=T0)
    assert why == ""
    assert_same_state(state, initial_state(params_of(policy), np.array([4.0]), T0))


def test_a_state_of_1000_targets_stays_well_under_one_dynamodb_item():
    policy, state, current, now = ticked(web, n=1000, ticks=12)
    names = [f"service-{i}" for i in range(1000)]
    blob = statecodec.encode(policy, state, names)
    assert len(blob) < 350_000
    back, why = statecodec.decode(blob, policy, targets=names, current=current, now=now)
    assert why == ""
    assert_same_state(back, state)


# -- decisions continue unchanged ------------------------------------------------------------------------


@pytest.mark.parametrize("policy_fn", POLICIES, ids=POLICY_IDS)
@pytest.mark.parametrize("reuse", [False, True], ids=["copied", "in-place"])
def test_decisions_after_save_and_load_are_the_decisions_without_it(policy_fn, reuse):
    policy = policy_fn()
    rng = np.random.default_rng(11)
    n, interval = 4, policy.interval
    targets = ["a", "b", "c", "d"]
    times = [T0 + interval * (k + 1) for k in range(40)]
    observations = [observe(policy, rng, n) for _ in times]
    current = np.array([3.0, 6.0, 1.0, 14.0])

    # Ticks 1-12 once; then one controller keeps its state in memory and another saves and loads it.
    start = initial_state(params_of(policy), current, T0)
    before, state, current = run(policy, start, current, observations[:12], times[:12])
    blob = statecodec.encode(policy, state, targets)
    loaded, why = statecodec.decode(blob, policy, targets=targets, current=current, now=times[12])
    assert why == ""

    kept, _, _ = run(policy, state, current, observations[12:], times[12:])
    # decoded arrays are writable: a decision may reuse them
    resumed, _, _ = run(policy, loaded, current, observations[12:], times[12:], reuse=reuse)

    for k, (a, b) in enumerate(zip(kept, resumed, strict=True)):
        assert_same_decision(a, b, where=f"tick {k + 13}")
    # The run moved, so the comparison means something.
    assert len({tuple(d.desired) for d in before + kept}) > 3


# -- targets matched by name -----------------------------------------------------------------------------


def test_reordered_and_dropped_targets_keep_their_own_columns():
    policy, state, current, now = ticked(mixed, n=3)
    blob = statecodec.encode(policy, state, ["a", "b", "c"])

    back, why = statecodec.decode(blob, policy, targets=["c", "a"], current=np.array([0.0, 0.0]), now=now)

    assert why == ""
    assert_same_state(back, take(state, [2, 0]))


def test_a_new_target_among_stored_ones_decides_as_if_it_had_started_fresh():
    """web: down stabilization 2m. After a restart that also adds target x (8 replicas, idle), x holds 8
    for two minutes exactly as a fresh controller would, while a and c carry on as if never stopped."""
    policy = web()
    params = params_of(policy)
    rng = np.random.default_rng(5)
    interval = policy.interval
    current = np.array([4.0, 6.0, 5.0])
    times = [T0 + interval * (k + 1) for k in range(36)]
    observations = [observe(policy, rng, 3) for _ in times]

    # t+15s..t+3m30s: a, b, c tick (14 ticks: the 10-slot rings have wrapped); the controller restarts
    # and comes back at the next tick, t+3m45s. The slot pushed for x evicts the oldest, from t+1m15s
    # (2m30s before the restart; the longest look-back is 2m).
    _, state, current = run(policy, initial_state(params, current, T0), current, observations[:14], times[:14])
    restart = times[14]
    blob = statecodec.encode(policy, state, ["a", "b", "c"])
    mixed_state, why = statecodec.decode(blob, policy, targets=["c", "x", "a"],
                                         current=np.array([current[2], 8.0, current[0]]), now=restart)
    assert why == ""

    idle = np.array([[20.0], [0.1], [0.001]])  # x: 20 % CPU, 100 ms, 0.1 % errors -> wants ceil(8*20/70)=3
    kept, _, _ = run(policy, state, current, observations[14:], times[14:])
    fresh, _, _ = run(policy, initial_state(params, np.array([8.0]), restart), np.array([8.0]),
                      [idle] * 22, times[14:])
    together, _, _ = run(policy, mixed_state, np.array([current[2], 8.0, current[0]]),
                         [np.hstack([o[:, [2]], idle, o[:, [0]]]) for o in observations[14:]], times[14:])
    assert state.recs_t[state.hist_heads[RECS]] == T0 + 5 * interval  # the slot the push for x replaces

    for k in range(22):
        assert_same_decision(together[k], kept[k], [0, 2], [2, 0], where=f"c, a at tick {k}")
        assert_same_decision(together[k], fresh[k], [1], [0], where=f"x at tick {k}")
    # x itself: held at 8 until the recommendation of 8 made at the restart leaves the 2-minute window.
    x = [int(d.desired[1]) for d in together]
    assert x[:8] == [8] * 8  # restart .. restart+1m45s
    assert x[8] == 3  # restart+2m: 8 is out of the window (a record exactly 2 m old is out)


def test_a_new_target_goes_into_a_slot_stamped_now_instead_of_pushing_another():
    policy, state, current, now = ticked(web, n=2)
    last_tick = now - policy.interval  # the newest stored slot is stamped with it
    slots, head = params_of(policy).history_slots, state.hist_heads[RECS]
    blob = statecodec.encode(policy, state, ["a", "b"])

    same_time, _ = statecodec.decode(blob, policy, targets=["a", "b", "x"], current=np.array([1.0, 1.0, 7.0]),
                                     now=last_tick)
    later, _ = statecodec.decode(blob, policy, targets=["a", "b", "x"], current=np.array([1.0, 1.0, 7.0]),
                                 now=now)

    newest = (head - 1) % slots
    assert arrays_equal(same_time.recs_t, state.recs_t) and same_time.hist_heads[RECS] == head
    assert same_time.recs_v[newest, 2] == 7.0
    assert np.isnan(np.delete(same_time.recs_v[:, 2], newest)).all()
    # A later time: one slot pushed at `now`, empty for the stored targets, 7 for x; nothing else moves.
    assert later.hist_heads[RECS] == (head + 1) % slots
    assert later.recs_t[head] == now
    assert np.isnan(later.recs_v[head, :2]).all() and later.recs_v[head, 2] == 7.0
    assert arrays_equal(later.ev_t, state.ev_t) and arrays_equal(later.hist_heads[1:], state.hist_heads[1:])
    assert np.isnan(later.rings[:, 2]).all() and np.isnan(later.panic_rings[:, 2]).all()  # x's empty windows


def test_only_new_targets_is_exactly_a_fresh_start():
    policy, state, current, now = ticked(mixed, n=2)
    blob = statecodec.encode(policy, state, ["a", "b"])
    back, why = statecodec.decode(blob, policy, targets=["y", "z"], current=np.array([3.0, 4.0]), now=now)
    assert why == ""
    assert_same_state(back, initial_state(params_of(policy), np.array([3.0, 4.0]), now))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda policy, st: statecodec.encode(policy, st, ["a", "a"]), "unique"),
        (lambda policy, st: statecodec.encode(policy, st, ["a"]), "2 target names|1 target names"),
        (lambda policy, st: statecodec.decode(b"", policy, targets=["a", "a"], current=np.ones(2), now=T0),
         "unique"),
        (lambda policy, st: statecodec.decode(b"", policy, targets=["a"], current=np.ones(2), now=T0), "shape"),
    ],
    ids=["encode-duplicate-names", "encode-name-count", "decode-duplicate-names", "decode-current-shape"],
)
def test_caller_mistakes_raise(call, message):
    policy = web()
    with pytest.raises(ValueError, match=message):
        call(policy, initial_state(params_of(policy), np.ones(2), T0))


# -- unusable blobs --------------------------------------------------------------------------------------


def rewrite(blob: bytes, *, header=None, arrays=None) -> bytes:
    """The blob with its header and/or arrays changed by the given functions (for blobs no encoder makes)."""
    with np.load(io.BytesIO(blob)) as npz:
        a = {k: npz[k] for k in npz.files}
    h = json.loads(a["header"].tobytes())
    if header:
        header(h)
    a["header"] = np.frombuffer(json.dumps(h).encode(), np.uint8)
    if arrays:
        arrays(a)
    out = io.BytesIO()
    np.savez_compressed(out, **a)
    return out.getvalue()


def flip(blob: bytes, at: int) -> bytes:
    b = bytearray(blob)
    b[at] ^= 0xFF
    return bytes(b)


def other_policy_blob(blob, policy, state):
    """Saved by a policy whose CPU window is longer: 3 slots of max instead of 2."""
    m = policy.metrics[0].model_copy(update={"window": policy.metrics[0].window.model_copy(update={"length": 45})})
    other = policy.model_copy(update={"metrics": [m, *policy.metrics[1:]]})
    return statecodec.encode(other, initial_state(params_of(other), np.ones(2), T0), ["a", "b"])


def _set(d, key, value):
    d[key] = value


UNUSABLE = [
    ("empty", lambda b, s, st: b"", "unreadable"),
    ("not-a-zip", lambda b, s, st: b"PK but not really a zip archive", "unreadable"),
    ("truncated", lambda b, s, st: b[: len(b) // 2], "unreadable"),
    ("byte-flipped-in-data", lambda b, s, st: flip(b, len(b) // 3), "unreadable"),
    ("other-format", lambda b, s, st: rewrite(b, header=lambda h: _set(h, "format", 2)), "format 2"),
    ("no-format", lambda b, s, st: rewrite(b, header=lambda h: h.pop("format")), "format None"),
    ("other-fingerprint", other_policy_blob, "another policy shape"),
    ("pickled-object-array", lambda b, s, st: rewrite(
        b, arrays=lambda a: _set(a, "blind", np.array([{"x": 1}, {"y": 2}], dtype=object))), "unreadable"),
    ("missing-array", lambda b, s, st: rewrite(b, arrays=lambda a: a.pop("recs_v")), "missing \\['recs_v'\\]"),
    ("wrong-shape", lambda b, s, st: rewrite(b, arrays=lambda a: _set(a, "recs_v", a["recs_v"][:, :1])),
     "recs_v is float64"),
    ("wrong-dtype", lambda b, s, st: rewrite(b, arrays=lambda a: _set(a, "blind", a["blind"].astype(float))),
     "blind is float64"),
    ("head-out-of-range", lambda b, s, st: rewrite(b, header=lambda h: h["heads"].update(recs=99)),
     "out of range"),
    ("head-not-a-number", lambda b, s, st: rewrite(b, header=lambda h: _set(h, "smooth", [["x", 0]] * 3)),
     "out of range"),
    ("header-not-json", lambda b, s, st: rewrite(b, arrays=lambda a: _set(a, "header", a["recs_t"])),
     "unreadable"),
    ("duplicate-targets", lambda b, s, st: rewrite(b, header=lambda h: _set(h, "targets", ["a", "a"])),
     "target list"),
    ("event-times-out-of-step", lambda b, s, st: rewrite(b, arrays=lambda a: _set(a, "down_t", a["down_t"] - 1)),
     "out of step"),
    ("event-heads-out-of-step", lambda b, s, st: rewrite(
        b, header=lambda h: h["heads"].update(down=(h["heads"]["down"] + 1) % len(st.ev_t))),
     "out of step"),
]


@pytest.mark.parametrize(("make", "reason"), [u[1:] for u in UNUSABLE], ids=[u[0] for u in UNUSABLE])
def test_an_unusable_blob_gives_a_fresh_state_and_says_why(make, reason):
    policy, state, current, now = ticked(web, n=2)
    blob = make(statecodec.encode(policy, state, ["a", "b"]), policy, state)

    back, why = statecodec.decode(blob, policy, targets=["a", "b"], current=np.array([5.0, 6.0]), now=now)

    assert why.startswith("saved state not used: ")
    assert re.search(reason, why), why
    assert_same_state(back, initial_state(params_of(policy), np.array([5.0, 6.0]), now))


def test_no_single_flipped_byte_is_ever_read_as_a_different_state():
    """Every 7th byte of a blob flipped in turn (all of them: 25 s; this sample: 3 s): each result is the
    saved state (a byte the zip format does not check, such as a file time) or a fresh start with a reason,
    never a quietly different state."""
    policy, state, current, now = ticked(mixed, n=2, ticks=4)
    blob = statecodec.encode(policy, state, ["a", "b"])
    fresh = initial_state(params_of(policy), current, now)
    outcomes = {"same": 0, "fresh": 0}
    for at in range(0, len(blob), 7):
        back, why = statecodec.decode(flip(blob, at), policy, targets=["a", "b"], current=current, now=now)
        assert_same_state(back, fresh if why else state)
        outcomes["fresh" if why else "same"] += 1
    assert outcomes["fresh"] > len(blob) // 14


# -- fingerprint ------------------------------------------------------------------------------------------


def _metric(policy: Policy, i: int, **update) -> Policy:
    metrics = list(policy.metrics)
    metrics[i] = metrics[i].model_copy(update=update)
    return policy.model_copy(update={"metrics": metrics})


def _window(policy: Policy, i: int, **update) -> Policy:
    return _metric(policy, i, window=policy.metrics[i].window.model_copy(update=update))


def _behavior(policy: Policy, direction: str, **update) -> Policy:
    b = policy.effective_behavior
    d = getattr(b, direction).model_copy(update=update)
    return policy.model_copy(update={"behavior": b.model_copy(update={direction: d})})


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (lambda p: _metric(p, 0, target=50.0, scale_up_above=55.0, scale_down_below=40.0), True),
        (lambda p: p.model_copy(update={"replicas": p.replicas.model_copy(update={"max": 40})}), True),
        (lambda p: _behavior(p, "scale_up", cooldown=60.0), True),
        (lambda p: _window(p, 0, length=45.0), False),
        (lambda p: _window(p, 0, type="mean"), False),
        (lambda p: _metric(p, 0, name="cpu_util"), False),
        (lambda p: _metric(p, 1, kind="gauge"), False),
        (lambda p: p.model_copy(update={"metrics": [p.metrics[1], p.metrics[0], p.metrics[2]]}), False),
        (lambda p: p.model_copy(update={"metrics": p.metrics[:2]}), False),
        (lambda p: p.model_copy(update={"panic": None}), False),
        (lambda p: _behavior(p, "scale_down", stabilization=600.0), False),
    ],
    ids=["thresholds", "bounds", "cooldown", "window-length", "window-type", "metric-renamed",
         "metric-kind", "metrics-reordered", "metric-removed", "panic-removed", "longer-history"],
)
def test_fingerprint_changes_exactly_when_the_state_layout_does(change, same):
    base = web()
    a = statecodec.fingerprint(base, params_of(base))
    b = statecodec.fingerprint(change(base), params_of(change(base)))
    assert (a == b) is same
    assert len(a) == 16
