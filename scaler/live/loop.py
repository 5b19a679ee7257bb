"""The live control loop: each policy on its interval, one tick in one order.

    1. lease     a follower skips the tick (and keeps no state: it loads the leader's when it leads; loading
                 fills the windows from the metric source's history, one range query per metric)
    2. observe   every target's counts and every metric, one query per metric for all targets
    3. decide    the same `decide()` the simulator runs: it proposes a count per target
    4. apply     write the targets whose count changes, within their own bounds (leader only, never dry run)
    5. commit    record what was actually written in the decision state, and persist it
    6. health    evaluate the health rules; their events start runbooks (`on_event`)
    7. report    notifications, logs, /metrics, the decision audit log, the status for `scaler status`
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from scaler import retry as retrying
from scaler.clock import Clock
from scaler.decision import backfill, statecodec
from scaler.decision.decide import Decision, decide
from scaler.decision.params import Params, params_of
from scaler.decision.state import State, initial_state
from scaler.errors import ScalerError
from scaler.live.apply import TargetOutcome, apply
from scaler.live.decisionlog import DecisionLog
from scaler.live.health import Bound, HealthEvent, HealthRule, bind, evaluate
from scaler.live.metrics import LoopMetrics
from scaler.live.notices import Memory, notices
from scaler.live.observe import observe, read_history
from scaler.live.telemetry import Telemetry
from scaler.notify import Notifier
from scaler.policy.model import Policy
from scaler.sources.base import MetricSource
from scaler.store.base import Lease, StateStore
from scaler.targets.base import ScaleTarget

log = logging.getLogger(__name__)

__all__ = ["Group", "HealthEvent", "Loop", "TargetOutcome", "TickReport", "key"]


@dataclass
class Group:
    """One policy and its targets, in column order; `state` is None until loaded (or after losing the lease)."""

    policy: Policy
    target_label: str
    labels: tuple[str, ...]
    targets: tuple[ScaleTarget, ...]
    params: Params = field(init=False)
    state: State | None = None
    known: np.ndarray = field(init=False)  # last count read per target, NaN = never read
    said: Memory = field(init=False)  # what the notifications already announced
    rules: list[Bound] = field(default_factory=list)
    last_success: float | None = None
    next_due: float = 0.0
    told_buckets: dict[int, int] = field(default_factory=dict)  # seasonal metric -> the bucket last logged

    def __post_init__(self) -> None:
        self.params = params_of(self.policy)
        self.known = np.full(len(self.labels), np.nan)
        self.said = Memory.empty(len(self.labels))

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.policy.metrics]

    def bind(self, rules: Sequence[HealthRule]) -> None:
        self.rules += bind(rules, self.name, self.metric_names, len(self.labels))


@dataclass(frozen=True)
class TickReport:
    policy: str
    time: float
    leader: bool
    targets: tuple[TargetOutcome, ...] = ()
    query_errors: dict[str, str] = field(default_factory=dict)
    events: tuple[HealthEvent, ...] = ()
    decision: Decision | None = None
    save_error: str | None = None  # why the decision state was not saved (the next tick starts without it)

    @property
    def ok(self) -> bool:
        return not self.query_errors and not any(t.error for t in self.targets) and self.save_error is None


EventSink = Callable[[HealthEvent], None]


class Loop:
    """Runs groups on their intervals. `tick(group)` is one tick now; `run(stop)` ticks until stopped."""

    def __init__(
        self,
        groups: Sequence[Group],
        *,
        source: MetricSource,
        store: StateStore,
        lease: Lease,
        clock: Clock,
        retry: retrying.RetryPolicy | None = None,
        dry_run: bool = False,
        metrics: LoopMetrics | None = None,
        decisions: DecisionLog | None = None,
        notifier: Notifier | None = None,
        on_event: EventSink | None = None,
        workers: int = 16,
        ready_after: float | None = None,
    ):
        self.groups = list(groups)
        self.source = source
        self.store = store
        self.lease = lease
        self.clock = clock
        self.retry = retry or retrying.RetryPolicy()
        self.dry_run = dry_run
        self.telemetry = Telemetry(metrics=metrics, decisions=decisions, dry_run=dry_run)
        self.notifier = notifier
        self.on_event = on_event
        self.ready_after = ready_after or 3 * max(g.policy.interval for g in self.groups)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scaler-io")

    def key(self, kind: str, g: Group) -> str:
        """Store key of a policy's state or decisions. A dry run keeps its own, so a shadow controller
        sharing the store never overwrites what the real one saved."""
        return key(kind, g.name, dry_run=self.dry_run)

    # -- one tick -----------------------------------------------------------------------------------

    def tick(self, g: Group) -> TickReport:
        started = time.perf_counter()
        now = self.clock.now()
        # 1. lease
        leader = self.lease.held(now)
        self.telemetry.leader(leader)
        if not leader:
            g.state = None
            self.telemetry.count(g.name, "follower")
            return TickReport(g.name, now, leader=False)
        # 2. observe
        ids = [t.id for t in g.targets]
        seen = observe(g.targets, g.labels, g.policy.metrics, target_label=g.target_label, known=g.known,
                       floor=g.policy.replicas.min, source=self.source, now=now, call=self._call, pool=self._pool)
        g.known = np.where(seen.read_ok, seen.current, g.known)
        self.telemetry.observed(g.name, ids, g.metric_names, seen)
        # 3. decide
        if g.state is None:
            g.state = self._load_state(g, seen.current, now, ready=seen.ready)
        t0 = time.perf_counter()
        decision = decide(g.params, g.state, seen.observed, current=seen.current, now=now, ready=seen.ready)
        self.telemetry.decided(g.name, time.perf_counter() - t0)
        # 4. apply
        done = apply(g.targets, g.labels, seen, decision.desired, decision.reasons, write=not self.dry_run,
                     still_leader=lambda: self.lease.held(self.clock.now()), call=self._call, pool=self._pool)
        self.telemetry.applied(g.name, done.outcomes)
        # 5. commit what was written, and persist it
        g.state = decision.state.with_applied(now, seen.current, done.applied, reuse=True)
        save_error = self._persist(g)
        # 6. health rules
        events = evaluate(g.rules, decision.smoothed, policy=g.name, labels=g.labels, now=now, pool=self._pool)
        # 7. report
        self.telemetry.health(events)
        for message in notices(g.said, policy=g.name, metric_names=g.metric_names, outcomes=done.outcomes,
                               events=events, query_errors=seen.query_errors, reasons=decision.reasons,
                               observed=decision.observed, now=now):
            if self.notifier is not None:
                self.notifier.send(message)
        self._dispatch(events)
        self.telemetry.decision(g.name, g.metric_names, now, decision, done.outcomes, events)
        self._log_seasonal(g, now, decision, done.outcomes)
        self.telemetry.status(self.store, self.key("decisions", g), g.name, now, decision, done.outcomes,
                              seen.query_errors)
        if not seen.query_errors:
            g.last_success = now
        self.telemetry.finished(g.name, now, time.perf_counter() - started, seen.query_errors)
        return TickReport(g.name, now, True, done.outcomes, seen.query_errors, tuple(events), decision, save_error)

    def _call(self, fn):
        """fn() with the shared retry policy (transient errors only), sleeping on the injected clock."""
        return retrying.call(fn, policy=self.retry, sleep=self.clock.sleep)

    def _load_state(self, g: Group, current: np.ndarray, now: float, *, ready: np.ndarray | None = None) -> State:
        """The saved state if there is a usable one, else a fresh one. Either way `current` counts as a
        recommendation made now, as HPA does after a restart: scale-down waits one stabilization window; and
        the windows are filled from the metric source's history (`_backfill`), `ready` serving."""
        try:
            blob = self.store.load(self.key("state", g))
        except ScalerError as e:
            log.warning("policy %s: loading saved state failed, starting fresh: %s", g.name, e)
            blob = None
        saved = False
        if blob is None:
            state = initial_state(g.params, current, now)
        else:
            state, why = statecodec.decode(blob, g.policy, targets=g.labels, current=current, now=now)
            if why:
                log.warning("policy %s: saved state not used (%s); starting fresh", g.name, why)
            else:
                state, saved = state.with_recommendation(now, current), True
        return self._backfill(g, state, current if ready is None else ready, now, saved=saved)

    def _backfill(self, g: Group, state: State, ready: np.ndarray, now: float, *, saved: bool) -> State:
        """`state` with every metric's window filled from history: one range query per metric for all targets
        over the span its window needs (scaler.decision.backfill), then only the windows run over the answers.
        A metric whose query fails keeps its window as loaded (empty when fresh, as without history) and says
        so; one whose answer names none of the targets keeps it quietly. A source without range queries fills
        nothing."""
        if not callable(getattr(self.source, "query_range", None)):
            return state
        spans = backfill.spans(g.params, now)
        if not any(spans):
            return state
        histories, errors = read_history(g.policy.metrics, g.labels, spans, target_label=g.target_label,
                                         source=self.source, pool=self._pool)
        for name, why in errors.items():
            log.warning("policy %s: filling the %s window from history failed; it starts %s: %s", g.name, name,
                        "as saved" if saved else "empty", why, extra={"policy": g.name})
        told = []
        for i, h in histories.items():
            state = backfill.fill(g.params, state, i, h.times, h.values, ready=ready, now=now)
            told.append(f"{g.policy.metrics[i].name} {h.times.size} samples every {spans[i].step:g} s "
                        f"for {h.found} of {len(g.labels)} targets")
        if told:
            log.info("policy %s: windows filled from history: %s", g.name, "; ".join(told), extra={"policy": g.name})
        return state

    def _log_seasonal(self, g: Group, now: float, decision: Decision, outcomes: Sequence[TargetOutcome]) -> None:
        """A seasonal window's numbers in the decision log once per bucket (they change when one closes): per
        target its correlation at the period and whether it asks, with the level ratio and headroom."""
        if self.telemetry.decisions is None:
            return
        stamp = datetime.fromtimestamp(now, UTC).isoformat()
        records = []
        for i, m in enumerate(g.policy.metrics):
            if m.window.type != "seasonal":
                continue
            bucket = int(now // m.window.effective_bucket)
            if g.told_buckets.get(i) == bucket:
                continue
            g.told_buckets[i] = bucket
            steps = decision.steps
            for j, o in enumerate(outcomes):
                records.append({
                    "ts": stamp, "event": "seasonal", "policy": g.name, "target": o.label, "id": o.id,
                    "metric": m.name, "correlation": _number(steps.correlation[i, j]),
                    "min_correlation": m.window.effective_min_correlation,
                    "asks": bool(not steps.no_opinion[i, j] and np.isfinite(steps.smoothed[i, j])),
                    "level_ratio": _number(steps.level_ratio[i, j]), "headroom": _number(steps.headroom[i, j]),
                })
        if records:
            try:
                self.telemetry.decisions.write(records)
            except OSError as e:
                log.error("writing the decision log failed: %s", e)

    def _persist(self, g: Group) -> str | None:
        """Save the group's state; why it failed, or None."""
        try:
            self.store.save(self.key("state", g), statecodec.encode(g.policy, g.state, g.labels))
        except ScalerError as e:
            log.error("policy %s: saving state failed: %s", g.name, e, extra={"policy": g.name})
            return str(e)
        return None

    def _dispatch(self, events: Sequence[HealthEvent]) -> None:
        if self.on_event is None:
            return
        for e in events:
            try:
                self.on_event(e)
            except Exception:
                log.exception("handling health event %s failed", e.rule.name)

    # -- running ------------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Ready when every policy had a tick with all metrics read within `ready_after` (so not before the
        first one); a follower is ready as a standby."""
        now = self.clock.now()
        if not self.lease.held(now):
            return True, "follower: standing by"
        stale = [g.name for g in self.groups if g.last_success is None or now - g.last_success > self.ready_after]
        if stale:
            return False, f"no successful tick (metrics read) within {self.ready_after:g}s for {', '.join(stale)}"
        return True, "ok"

    def run(self, stop: threading.Event, *, wait: Callable[[float], bool] | None = None) -> None:
        """Tick each policy on its interval until `stop` is set. A tick always finishes before stopping, and
        one that overruns its interval delays the next (ticks never overlap; missed slots are skipped).

        wait(seconds) -> stopped: how to wait for the next tick (default: `stop.wait`, which a signal
        handler interrupts); tests pass one that advances a fake clock.
        """
        wait = wait or stop.wait
        now = self.clock.now()
        for g in self.groups:
            g.next_due = now
        while not stop.is_set():
            g = min(self.groups, key=lambda x: x.next_due)
            delay = g.next_due - self.clock.now()
            if delay > 0 and wait(delay):
                break
            self.safe_tick(g)
            # The next slot on this policy's interval grid that is still ahead: 15 s interval, a 40 s tick
            # started at t=0 -> next at t=45, not t=15.
            late = self.clock.now() - g.next_due
            g.next_due += g.policy.interval * (int(late // g.policy.interval) + 1)

    def safe_tick(self, g: Group) -> TickReport:
        try:
            return self.tick(g)
        except Exception:
            # A bug in one tick must not end the controller; /readyz turns red if it keeps happening.
            log.exception("policy %s: tick failed", g.name)
            now = self.clock.now()
            return TickReport(g.name, now, leader=self.lease.held(now), query_errors={"tick": "failed"})

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _number(x: float) -> float | None:
    """A figure for the JSON log: rounded to 6 decimals, None for NaN or infinite."""
    return round(float(x), 6) if np.isfinite(x) else None


def key(kind: str, policy: str, *, dry_run: bool = False) -> str:
    """'state/web', 'decisions/web'; 'dry-run/state/web' for a dry run."""
    return f"{'dry-run/' if dry_run else ''}{kind}/{policy}"
