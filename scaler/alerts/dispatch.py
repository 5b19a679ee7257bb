"""Starting planned runs, once per alert occurrence: dedup, counters, and a worker pool for the webhook."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from scaler.alerts.payload import Payload
from scaler.alerts.plan import Outcome, Planned, plan
from scaler.alerts.rules import Rule
from scaler.errors import ScalerError
from scaler.runbook.records import Trigger

log = logging.getLogger(__name__)


class RunLike(Protocol):
    """The part of a RunRecord the dispatch reads."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...


class RunStarter(Protocol):
    """The part of RunbookService the dispatch needs. Parameter values rendered from an alert arrive marked as
    `Data` (scaler.runbook.origin), which the service never reads as a secret's env:/file: reference."""

    def start(
        self,
        runbook: str,
        params: dict[str, str],
        *,
        trigger: Trigger,
        dry_run: bool = False,
        require_approval: bool = False,
    ) -> RunLike: ...


class SeenKeys:
    """A bounded, thread-safe record of keys already started here: skips duplicates before any I/O.

    The journal is what guarantees one run per key (across restarts too); this only saves the work.
    """

    def __init__(self, capacity: int = 4096):
        self._capacity = capacity
        self._keys: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, key: str) -> tuple[bool, str | None]:
        """(True, None) if the key is new and now reserved; (False, run_id or None) if seen before."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False, self._keys[key]
            self._keys[key] = None
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)
            return True, None

    def settle(self, key: str, run_id: str) -> None:
        with self._lock:
            if key in self._keys:
                self._keys[key] = run_id

    def forget(self, key: str) -> None:
        """A start that failed must not block the next delivery of the same alert from trying again."""
        with self._lock:
            self._keys.pop(key, None)


class TriggerMetrics:
    """Counters for runs started from alerts and health rules, and for what was skipped."""

    def __init__(self, registry: CollectorRegistry):
        self.started = Counter("scaler_trigger_runs_started_total", "Runs started by triggers",
                               ["runbook", "mode"], registry=registry)
        self.duplicates = Counter("scaler_trigger_duplicates_total",
                                  "Alert deliveries skipped because their key already started a run",
                                  registry=registry)
        self.skipped = Counter("scaler_trigger_alerts_skipped_total", "Alerts that started nothing",
                               ["reason"], registry=registry)
        self.errors = Counter("scaler_trigger_start_errors_total", "Run starts that raised", ["runbook"],
                              registry=registry)
        for reason in ("unmatched", "error"):
            self.skipped.labels(reason=reason)


def start_one(
    p: Planned, *, service: RunStarter, seen: SeenKeys | None = None, metrics: TriggerMetrics | None = None
) -> Outcome:
    """Start one planned run (the key was already reserved); an exception frees the key for a retry."""
    try:
        record = service.start(p.runbook, p.params, trigger=p.trigger, dry_run=p.dry_run,
                               require_approval=not p.auto)
    except Exception as e:  # one bad runbook must not take the webhook worker down
        if seen is not None:
            seen.forget(p.key)
        if metrics is not None:
            metrics.errors.labels(runbook=p.runbook).inc()
        log.error("trigger %s: starting runbook %s failed: %s", p.rule, p.runbook, e,
                  exc_info=not isinstance(e, ScalerError))
        return Outcome(p.fingerprint, p.status, "error", p.rule, p.runbook, p.key, detail=str(e))
    if seen is not None:
        seen.settle(p.key, record.id)
    if metrics is not None:
        metrics.started.labels(runbook=p.runbook, mode="auto" if p.auto else "approval").inc()
    # start() returns when an auto run has finished (or a pending one is journaled): say how it ended.
    log.info("trigger %s: run %s of %s (%s): %s", p.rule, record.id, p.runbook,
             "auto" if p.auto else "needs approval", record.status)
    return Outcome(p.fingerprint, p.status, "started" if p.auto else "pending", p.rule, p.runbook, p.key,
                   record.id, detail=record.status)


def _reserve(p: Planned, seen: SeenKeys | None, metrics: TriggerMetrics | None) -> Outcome | None:
    """None if the run should start; a duplicate Outcome if its key was seen already."""
    if seen is None:
        return None
    fresh, run_id = seen.reserve(p.key)
    if fresh:
        return None
    if metrics is not None:
        metrics.duplicates.inc()
    return Outcome(p.fingerprint, p.status, "duplicate", p.rule, p.runbook, p.key, run_id)


def _count_skips(items: list[Planned | Outcome], metrics: TriggerMetrics | None) -> None:
    if metrics is not None:
        for item in items:
            if isinstance(item, Outcome):
                metrics.skipped.labels(reason=item.result).inc()


def dispatch(
    payload: Payload,
    *,
    service: RunStarter,
    rules: Iterable[Rule],
    kind: str = "alertmanager",
    who: str | None = None,
    seen: SeenKeys | None = None,
    metrics: TriggerMetrics | None = None,
) -> list[Outcome]:
    """Match, render and start every alert's runbook now, in this thread; one Outcome per alert."""
    items = plan(payload, rules, kind=kind, who=who)
    _count_skips(items, metrics)
    out: list[Outcome] = []
    for item in items:
        if isinstance(item, Outcome):
            out.append(item)
        else:
            out.append(_reserve(item, seen, metrics) or start_one(item, service=service, seen=seen,
                                                                     metrics=metrics))
    return out


@dataclass
class Dispatcher:
    """The webhook's dispatch: decides and dedups in the caller's thread, starts runs on worker threads.

    `submit` returns at once so Alertmanager gets its answer in milliseconds while a runbook may take
    minutes; a slow answer would make Alertmanager time out and redeliver.
    """

    service: RunStarter
    rules: list[Rule]
    metrics: TriggerMetrics | None = None
    workers: int = 4
    seen: SeenKeys = field(default_factory=SeenKeys)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scaler-trigger")
        self._idle = threading.Condition()
        self._in_flight = 0

    def submit(
        self, payload: Payload, *, kind: str = "alertmanager", who: str | None = None
    ) -> list[Outcome]:
        """Plan every alert; queue the new runs and return at once with queued/duplicate/skipped."""
        items = plan(payload, self.rules, kind=kind, who=who)
        _count_skips(items, self.metrics)
        out: list[Outcome] = []
        for item in items:
            if isinstance(item, Outcome):
                out.append(item)
                continue
            dup = _reserve(item, self.seen, self.metrics)
            if dup is not None:
                out.append(dup)
                continue
            with self._idle:
                self._in_flight += 1
            # The callback also runs for a start cancelled by close(), so drain() never waits for it.
            self._pool.submit(start_one, item, service=self.service, seen=self.seen,
                              metrics=self.metrics).add_done_callback(self._done)
            out.append(Outcome(item.fingerprint, item.status, "queued", item.rule, item.runbook, item.key))
        return out

    def _done(self, _: Future[Outcome]) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued start has returned; False if `timeout` seconds passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def close(self) -> None:
        """Drop starts not yet begun and wait for the running ones: a runbook is not cut off mid-step."""
        self._pool.shutdown(wait=True, cancel_futures=True)
