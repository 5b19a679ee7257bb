"""The live control loop: observe -> decide -> apply -> persist, one policy at a time, on its interval.

A tick reads every target's replicas and every metric (one query per metric for all targets), calls the
same `decide()` the simulator calls, writes only the targets whose count should change (and only while this
controller holds the lease), then persists state, logs every decision and evaluates health rules.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from scaler import retry as retrying
from scaler.clock import Clock
from scaler.decision import statecodec
from scaler.decision.decide import Decision, Spec, State, decide
from scaler.decision.reasons import Reason, describe, describe_all
from scaler.errors import PermanentError, ProviderError, ScalerError
from scaler.live.decisionlog import DecisionLog
from scaler.live.health import HealthRule, Probe, RuleState, evidence, metric_condition, probe, step
from scaler.live.metrics import LoopMetrics
from scaler.live.notify import Message, Notifier
from scaler.policy.model import Policy
from scaler.sources.base import MetricSource
from scaler.store.base import Lease, StateStore
from scaler.targets.base import Replicas, ScaleTarget

log = logging.getLogger(__name__)

_NO_DATA = int(Reason.NO_DATA)


@dataclass
class Rule:
    """A health rule bound to one policy's targets, with its per-target state."""

    rule: HealthRule
    metric: int | None  # row of the metric in the policy, None for http rules
    state: RuleState


@dataclass
class Group:
    """One policy and its targets, in column order; `state` is None until loaded (or after losing the lease)."""

    policy: Policy
    target_label: str
    labels: tuple[str, ...]
    targets: tuple[ScaleTarget, ...]
    spec: Spec = field(init=False)
    state: State | None = None
    known: np.ndarray = field(init=False)  # last desired count read per target, NaN = never read
    holding: np.ndarray = field(init=False)  # held on missing data last tick (notify on change only)
    failing: np.ndarray = field(init=False)  # last write failed (notify on change only)
    rules: list[Rule] = field(default_factory=list)
    metrics_down: bool = False
    last_success: float | None = None
    next_due: float = 0.0

    def __post_init__(self) -> None:
        self.spec = Spec.of(self.policy)
        n = len(self.labels)
        self.known = np.full(n, np.nan)
        self.holding = np.zeros(n, dtype=bool)
        self.failing = np.zeros(n, dtype=bool)

    @property
    def name(self) -> str:
        return self.policy.name

    def bind(self, rules: Sequence[HealthRule]) -> None:
        names = [m.name for m in self.policy.metrics]
        for r in rules:
            if r.policy not in (None, self.name) or (r.metric is not None and r.metric not in names):
                continue
            row = names.index(r.metric) if r.metric is not None else None
            self.rules.append(Rule(r, row, RuleState.empty(len(self.labels))))


@dataclass(frozen=True)
class TargetOutcome:
    label: str
    id: str
    current: int | None  # None: the read failed
    ready: int | None
    desired: int
    written: bool
    reasons: int
    error: str | None = None


@dataclass(frozen=True)
class HealthEvent:
    rule: HealthRule
    policy: str
    target: str
    status: str  # firing | resolved
    since: float
    evidence: str


@dataclass(frozen=True)
class TickReport:
    policy: str
    time: float
    leader: bool
    targets: tuple[TargetOutcome, ...] = ()
    query_errors: dict[str, str] = field(default_factory=dict)
    events: tuple[HealthEvent, ...] = ()
    decision: Decision | None = None

    @property
    def ok(self) -> bool:
        return not self.query_errors and not any(t.error for t in self.targets)


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
        self.metrics = metrics
        self.decisions = decisions
        self.notifier = notifier
        self.on_event = on_event
        self.ready_after = ready_after or 3 * max(g.policy.interval for g in self.groups)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scaler-io")
        self._was_leader = False

    def key(self, kind: str, g: Group) -> str:
        """Store key of a policy's state or decisions. A dry run keeps its own, so a shadow controller
        sharing the store never overwrites what the real one saved."""
        return key(kind, g.name, dry_run=self.dry_run)

    # -- one tick -----------------------------------------------------------------------------------

    def tick(self, g: Group) -> TickReport:
        started = time.perf_counter()
        now = self.clock.now()
        leader = self.lease.held(now)
        if self.metrics:
            self.metrics.leader.set(1 if leader else 0)
        if not leader:
            # A follower keeps nothing in memory: when it becomes leader it loads the leader's saved state.
            g.state = None
            self._count(g, "follower")
            return TickReport(g.name, now, leader=False)

        reads = self._read_targets(g)
        observed, query_errors = self._observe(g, now)
        ok_read = np.array([isinstance(r, Replicas) for r in reads], dtype=bool)
        current = np.array([r.desired if isinstance(r, Replicas) else np.nan for r in reads], dtype=float)
        ready = np.array([r.ready if isinstance(r, Replicas) else np.nan for r in reads], dtype=float)
        g.known = np.where(ok_read, current, g.known)
        # A target we could not read is held: it gets no data (so no recommendation is recorded) and keeps
        # its last known count (the policy minimum if never read); nothing is written to it this tick.
        current = np.where(ok_read, current, np.where(np.isnan(g.known), g.spec.min, g.known))
        ready = np.where(ok_read, ready, current)
        observed[:, ~ok_read] = np.nan

        if g.state is None:
            g.state = self._load_state(g, current, now)
        t0 = time.perf_counter()
        decision = decide(g.spec, g.state, observed, current=current, now=now, ready=ready)
        if self.metrics:
            self.metrics.decide_seconds.labels(policy=g.name).observe(time.perf_counter() - t0)
        g.state = decision.state

        final = self._provider_bounds(decision.desired, reads)
        outcomes = self._apply(g, reads, current, ready, final, decision.reasons, leader, now)
        self._persist(g, now, decision, outcomes)
        events = self._health(g, decision, ok_read, now)
        self._report(g, now, decision, outcomes, query_errors, events)
        if not query_errors:
            g.last_success = now
        self._count(g, "metrics_failed" if query_errors else "ok")
        if self.metrics:
            self.metrics.tick_seconds.labels(policy=g.name).observe(time.perf_counter() - started)
            if not query_errors:
                self.metrics.last_success.labels(policy=g.name).set(now)
        return TickReport(g.name, now, True, tuple(outcomes), query_errors, tuple(events), decision)

    def _count(self, g: Group, outcome: str) -> None:
        if self.metrics:
            self.metrics.ticks.labels(policy=g.name, outcome=outcome).inc()

    def _call(self, fn):
        """fn() with the shared retry policy (transient errors only), sleeping on the injected clock."""
        return retrying.call(fn, policy=self.retry, sleep=self.clock.sleep)

    def _read_targets(self, g: Group) -> list[Replicas | ProviderError]:
        def one(t: ScaleTarget) -> Replicas | ProviderError:
            try:
                return self._call(t.read)
            except ProviderError as e:
                return e
            except Exception as e:  # an adapter bug must cost one target, not the tick
                log.exception("reading %s failed", t.id)
                return PermanentError(f"{t.id}: {type(e).__name__}: {e}", code=type(e).__name__)

        reads = list(self._pool.map(one, g.targets))
        for t, r in zip(g.targets, reads, strict=True):
            if isinstance(r, ProviderError):
                log.warning("policy %s: reading %s failed: %s", g.name, t.id, r,
                            extra={"policy": g.name, "target": t.id})
                if self.metrics:
                    self.metrics.target_errors.labels(policy=g.name, target=t.id, operation="read",
                                                      error="transient" if r.transient else "permanent").inc()
        return reads

    def _observe(self, g: Group, now: float) -> tuple[np.ndarray, dict[str, str]]:
        """(metrics, targets) values, NaN where a query failed or returned nothing for a target."""
        metrics = g.policy.metrics
        observed = np.full((len(metrics), len(g.labels)), np.nan)
        column = {label: j for j, label in enumerate(g.labels)}
        errors: dict[str, str] = {}

        def one(m):
            try:
                return self.source.query(m.query, by=g.target_label, now=now)
            except ScalerError as e:
                return e

        # The queries go out together: a tick waits for the slowest one, not for their sum.
        for i, (m, got) in enumerate(zip(metrics, self._pool.map(one, metrics), strict=True)):
            if isinstance(got, Exception):
                errors[m.name] = str(got)
                if self.metrics:
                    self.metrics.read_failures.labels(policy=g.name, metric=m.name).inc()
                continue
            row = observed[i]
            for label, value in got.items():
                j = column.get(label)
                if j is not None:
                    row[j] = value
        if self.metrics:
            for i, m in enumerate(metrics):
                self.metrics.missing.labels(policy=g.name, metric=m.name).set(int(np.isnan(observed[i]).sum()))
        if errors:
            log.warning("policy %s: metric queries failed, holding where data is missing: %s", g.name,
                        "; ".join(f"{k}: {v}" for k, v in errors.items()), extra={"policy": g.name})
        return observed, errors

    def _load_state(self, g: Group, current: np.ndarray, now: float) -> State:
        """The saved state if there is a usable one, else a fresh one. Either way `current` counts as a
        recommendation made now, as HPA does after a restart: scale-down waits one stabilization window."""
        from scaler.decision.decide import initial_state

        key = self.key("state", g)
        try:
            blob = self.store.load(key)
        except ScalerError as e:
            log.warning("policy %s: loading saved state failed, starting fresh: %s", g.name, e)
            blob = None
        if blob is None:
            return initial_state(g.spec, current, now)
        state, why = statecodec.decode(blob, g.spec, targets=g.labels, current=current, now=now)
        if why:
            log.warning("policy %s: saved state not used (%s); starting fresh", g.name, why)
            return state
        return replace(state, recs=state.recs.push(now, current))

    @staticmethod
    def _provider_bounds(desired: np.ndarray, reads: list[Replicas | ProviderError]) -> np.ndarray:
        """Clamp into each target's own bounds (an ASG's MinSize/MaxSize) where it has them."""
        out = desired.copy()
        for j, r in enumerate(reads):
            if isinstance(r, Replicas):
                if r.max is not None and out[j] > r.max:
                    out[j] = r.max
                if r.min is not None and out[j] < r.min:
                    out[j] = r.min
        return out

    def _apply(self, g, reads, current, ready, final, reasons, leader, now) -> list[TargetOutcome]:
        """Write the targets whose count changes (leader only, never in dry-run); one failure costs one target."""
        todo = [j for j, r in enumerate(reads) if isinstance(r, Replicas) and final[j] != r.desired]
        errors: dict[int, str] = {}
        written: set[int] = set()
        if todo and not self.dry_run:

            def write(j: int) -> tuple[int, ProviderError | None]:
                # Ask the lease again right before writing: leadership may have lapsed during the tick.
                if not self.lease.held(self.clock.now()):
                    return j, PermanentError("lost the lease before writing", code="NotLeader")
                try:
                    self._call(lambda: g.targets[j].write(int(final[j])))
                    return j, None
                except ProviderError as e:
                    return j, e
                except Exception as e:
                    log.exception("writing %s failed", g.targets[j].id)
                    return j, PermanentError(f"{type(e).__name__}: {e}", code=type(e).__name__)

            for j, err in self._pool.map(write, todo):
                t = g.targets[j]
                if err is None:
                    written.add(j)
                    direction = "up" if final[j] > current[j] else "down"
                    if self.metrics:
                        self.metrics.writes.labels(policy=g.name, target=t.id, direction=direction).inc()
                    log.info("policy %s: scaled %s %d -> %d (%s)", g.name, t.id, int(current[j]), int(final[j]),
                             describe(int(reasons[j])), extra={"policy": g.name, "target": t.id})
                    self._notify("info", f"scaled {t.id}", f"{int(current[j])} -> {int(final[j])} replicas "
                                 f"({describe(int(reasons[j])) or 'no reason'})", policy=g.name)
                    g.failing[j] = False
                    continue
                errors[j] = str(err)
                kind = "transient" if err.transient else "permanent"
                log.error("policy %s: writing %s failed (%s): %s", g.name, t.id, kind, err,
                          extra={"policy": g.name, "target": t.id})
                if self.metrics:
                    self.metrics.target_errors.labels(policy=g.name, target=t.id, operation="write",
                                                      error=kind).inc()
                if not g.failing[j]:
                    self._notify("critical", f"cannot scale {t.id}",
                                 f"writing {int(final[j])} replicas failed: {err}", policy=g.name)
                g.failing[j] = True
        out = []
        for j, (label, t, r) in enumerate(zip(g.labels, g.targets, reads, strict=True)):
            read_ok = isinstance(r, Replicas)
            out.append(TargetOutcome(
                label=label, id=t.id,
                current=int(current[j]) if read_ok else None,
                ready=int(ready[j]) if read_ok else None,
                desired=int(final[j]), written=j in written, reasons=int(reasons[j]),
                error=errors.get(j) or (None if read_ok else f"read failed: {r}"),
            ))
        return out

    def _persist(self, g: Group, now: float, decision: Decision, outcomes: list[TargetOutcome]) -> None:
        try:
            self.store.save(self.key("state", g), statecodec.encode(g.spec, decision.state, g.labels))
        except ScalerError as e:
            log.error("policy %s: saving state failed: %s", g.name, e, extra={"policy": g.name})

    # -- health rules -------------------------------------------------------------------------------

    def _health(self, g: Group, decision: Decision, ok_read: np.ndarray, now: float) -> list[HealthEvent]:
        events: list[HealthEvent] = []
        for bound in g.rules:
            rule = bound.rule
            probes: list[Probe] | None = None
            before = bound.state.since  # a resolved event keeps the start of what it resolves
            if rule.http is not None:
                probes = list(self._pool.map(lambda label, c=rule.http: probe(c, label), g.labels))
                failed = np.array([not p.ok for p in probes], dtype=bool)
                bound.state, fired, resolved = step(rule, bound.state, failed, now)
            else:
                cond = metric_condition(rule, decision.smoothed[bound.metric])
                bound.state, fired, resolved = step(rule, bound.state, cond, now)
            for j in np.flatnonzero(fired | resolved):
                value = None if bound.metric is None else float(decision.smoothed[bound.metric, j])
                status = "firing" if fired[j] else "resolved"
                since = float(bound.state.since[j] if fired[j] else before[j])
                text = evidence(rule, value, probes[j].status if probes else None, int(bound.state.streak[j]))
                events.append(HealthEvent(rule, g.name, g.labels[j], status, since, text))
            if self.metrics:
                for j, label in enumerate(g.labels):
                    if fired[j] or resolved[j]:
                        self.metrics.health.labels(rule=rule.name, policy=g.name, target=label).set(
                            1 if fired[j] else 0)
        for e in events:
            log.warning("health rule %s %s for %s/%s: %s", e.rule.name, e.status, e.policy, e.target, e.evidence,
                        extra={"rule": e.rule.name, "policy": e.policy, "target": e.target, "status": e.status})
            if self.metrics:
                self.metrics.health_events.labels(rule=e.rule.name, status=e.status).inc()
            severity = e.rule.severity if e.status == "firing" else "info"
            self._notify(severity, f"health rule {e.rule.name} {e.status}", f"{e.policy}/{e.target}: {e.evidence}",
                         policy=e.policy, target=e.target)
            if self.on_event is not None:
                try:
                    self.on_event(e)
                except Exception:
                    log.exception("handling health event %s failed", e.rule.name)
        return events

    # -- reporting ----------------------------------------------------------------------------------

    def _notify(self, severity: str, title: str, text: str, **fields: str) -> None:
        if self.notifier is not None:
            self.notifier.send(Message(severity, title, text, fields))  # type: ignore[arg-type]

    def _report(self, g, now, decision: Decision, outcomes: list[TargetOutcome], query_errors, events) -> None:
        names = [m.name for m in g.policy.metrics]
        if self.metrics:
            self.metrics.count_reasons(g.name, decision.reasons)
            for o in outcomes:
                if o.current is not None:
                    self.metrics.current.labels(policy=g.name, target=o.label).set(o.current)
                    self.metrics.ready.labels(policy=g.name, target=o.label).set(o.ready)
                self.metrics.desired.labels(policy=g.name, target=o.label).set(o.desired)
        # Holding on missing data: say so when it starts and when it ends, not every tick. While the whole
        # metric source is down, one message for the policy instead of one per target.
        if query_errors and not g.metrics_down:
            self._notify("critical", f"metrics unavailable for {g.name}",
                         "holding every target at its current count (missing data never scales down): "
                         + "; ".join(f"{k}: {v}" for k, v in query_errors.items())[:500], policy=g.name)
        elif not query_errors and g.metrics_down:
            self._notify("info", f"metrics back for {g.name}", "decisions resume", policy=g.name)
        g.metrics_down = bool(query_errors)
        holding = (decision.reasons & _NO_DATA) != 0
        if not query_errors:
            for j in np.flatnonzero(holding & ~g.holding):
                missing = [names[i] for i in range(len(names)) if np.isnan(decision.observed[i, j])]
                self._notify("warning", f"holding {g.targets[j].id}", f"no fresh data for {', '.join(missing)}: "
                             f"holding at {outcomes[j].desired} replicas", policy=g.name)
        g.holding = holding
        if self.decisions is not None:
            stamp = datetime.fromtimestamp(now, UTC).isoformat()
            observed, smoothed = _columns(decision.observed), _columns(decision.smoothed)
            proposal, stabilized = _columns(decision.proposal[None])[0], _columns(decision.stabilized[None])[0]
            reasons = describe_all(decision.reasons)
            records = [{
                "ts": stamp, "event": "decision", "policy": g.name, "target": o.label, "id": o.id,
                "current": o.current, "ready": o.ready, "desired": o.desired, "written": o.written,
                "dry_run": self.dry_run, "reasons": reasons[j].split("+") if reasons[j] else [],
                "observed": {n: observed[i][j] for i, n in enumerate(names)},
                "smoothed": {n: smoothed[i][j] for i, n in enumerate(names)},
                "proposal": proposal[j], "stabilized": stabilized[j],
                **({"error": o.error} if o.error else {}),
            } for j, o in enumerate(outcomes)]
            records += [{"ts": stamp, "event": f"health.{e.status}", "rule": e.rule.name, "policy": e.policy,
                         "target": e.target, "since": e.since, "evidence": e.evidence} for e in events]
            try:
                self.decisions.write(records)
            except OSError as e:
                log.error("writing the decision log failed: %s", e)
        try:
            self.store.save(self.key("decisions", g), _summary(g, now, self.dry_run, decision, outcomes, query_errors))
        except ScalerError as e:
            log.error("policy %s: saving decisions failed: %s", g.name, e)

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


def key(kind: str, policy: str, *, dry_run: bool = False) -> str:
    """'state/web', 'decisions/web'; 'dry-run/state/web' for a dry run."""
    return f"{'dry-run/' if dry_run else ''}{kind}/{policy}"


def _columns(values: np.ndarray) -> list[list[float | None]]:
    """Rows of a (rows, targets) array as JSON-ready lists: rounded to 6 decimals, None for NaN/inf."""
    rounded = np.round(np.where(np.isfinite(values), values, np.nan), 6).tolist()
    return [[None if v != v else v for v in row] for row in rounded]


def _summary(g: Group, now: float, dry_run: bool, d: Decision, outcomes: list[TargetOutcome], errors) -> bytes:
    """The latest decision per target, for `scaler status`."""
    observed, smoothed = _columns(d.observed), _columns(d.smoothed)
    return json.dumps({
        "policy": g.name, "time": now, "dry_run": dry_run, "query_errors": errors,
        "targets": [{
            "label": o.label, "id": o.id, "current": o.current, "ready": o.ready, "desired": o.desired,
            "written": o.written, "reasons": o.reasons, "error": o.error,
            "observed": [row[j] for row in observed], "smoothed": [row[j] for row in smoothed],
        } for j, o in enumerate(outcomes)],
    }).encode()
