"""Assembles a running controller from a loaded run config: source, targets, store, lease, HTTP, notifications,
health-rule dispatch. `Controller` is a context manager so tests and `scaler run` start and stop it alike."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from scaler.aws import AwsClients
from scaler.clock import Clock, SystemClock
from scaler.errors import ConfigError, ScalerError
from scaler.live.config import Loaded
from scaler.live.decisionlog import DecisionLog
from scaler.live.loop import Group, HealthEvent, Loop
from scaler.live.metrics import LoopMetrics
from scaler.live.notices import event_labels
from scaler.notify import Notifier
from scaler.server.http import Server
from scaler.targets.base import KubeSettings, TargetContext
from scaler.units import split_listen

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews (or tries to take) the lease every ttl/3 on its own thread, so leadership does not depend on
    how long a tick takes; a follower takes over within one TTL of the leader's last renewal."""

    def __init__(self, lease, *, clock: Clock, every: float):
        self.lease = lease
        self.clock = clock
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leader = False
        self.error: str | None = None  # the last acquire's error: a follower that cannot reach the lease

    def beat(self) -> bool:
        try:
            got = self.lease.acquire(self.clock.now())
            self.error = None
        except ScalerError as e:  # a store outage: we stop being leader when our last renewal runs out
            log.warning("lease renewal failed: %s", e)
            self.error = str(e)
            got = False
        if got != self.leader:
            log.log(logging.INFO if got else logging.WARNING, "leadership %s (we are %s, leader %s)",
                    "acquired" if got else "lost", self.lease.holder, self.lease.leader,
                    extra={"holder": self.lease.holder})
        self.leader = got
        return got

    def start(self) -> LeaseKeeper:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="scaler-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if release:
            self.lease.release()


@dataclass(frozen=True)
class Skipped:
    """A target a dry run could not build (no kubeconfig, say), left out with a warning instead of refusing."""

    policy: str
    label: str
    kind: str
    why: str


@dataclass
class Controller:
    loop: Loop
    server: Server | None
    keeper: LeaseKeeper
    notifier: Notifier
    aws: AwsClients
    stack: ExitStack = field(repr=False)
    skipped: tuple[Skipped, ...] = ()  # targets a dry run left out, and why

    def close(self) -> None:
        self.stack.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(
    loaded: Loaded,
    *,
    clock: Clock | None = None,
    dry_run: bool = False,
    listen: str | None = None,
    serve_http: bool = True,
    registry: CollectorRegistry | None = None,
) -> Controller:
    """Everything `scaler run` runs, started (HTTP bound, lease tried) but not ticking: call loop.run()."""
    from scaler.decision.decide import warm
    from scaler.sources.base import SourceContext
    from scaler.store.base import StoreContext
    from scaler.store.lease import SoloLease

    # The first decision would otherwise compile the decision path (or load it from cache) mid-tick.
    log.info("decision path ready in %.2f s", warm())
    cfg = loaded.config
    clock = clock or SystemClock()
    registry = registry or CollectorRegistry()
    stack = ExitStack()
    try:
        aws = AwsClients(cfg.aws.settings())
        k = cfg.kubernetes
        kube = KubeSettings(in_cluster=k.in_cluster, kubeconfig=k.kubeconfig and loaded.base / k.kubeconfig,
                            context=k.context, timeout=k.timeout)
        ctx = TargetContext(aws=aws, kube=kube)
        try:
            source = loaded.prometheus.build(SourceContext(base_dir=loaded.base))
        except ConfigError as e:  # a secret it points at is missing: name this config file, not "metric source"
            raise ConfigError(loaded.source, e.problems) from None
        store_ctx = StoreContext(aws=aws, clock=clock)
        store = loaded.state.build(store_ctx)
        # A dry run never takes part in the election: it must not keep the real leader from writing.
        lease = SoloLease(store_ctx.holder) if dry_run else loaded.lease.build(store_ctx)
        if hasattr(source, "close"):
            stack.callback(source.close)
        groups, skipped = _groups(loaded, ctx, dry_run=dry_run)
        notifier = Notifier(loaded.channels, clock=clock, labels=_runbook_label(loaded))
        stack.callback(notifier.close)
        on_event = _runbook_dispatch(loaded, stack, aws, dry_run=dry_run)
        loop = Loop(groups, source=source, store=store, lease=lease, clock=clock, retry=cfg.retry_policy(),
                    dry_run=dry_run, metrics=LoopMetrics(registry),
                    decisions=DecisionLog(cfg.audit) if cfg.audit else None, notifier=notifier,
                    on_event=on_event, workers=cfg.workers, ready_after=cfg.ready_after)
        stack.callback(loop.close)
        ttl = 0.0 if dry_run else float(getattr(loaded.lease, "ttl", 0) or 0)
        keeper = LeaseKeeper(lease, clock=clock, every=max(ttl / 3, 0.2) if ttl else 3600.0).start()
        stack.callback(keeper.stop)
        server = None
        if serve_http:
            host, port = split_listen(listen or cfg.listen)
            try:
                server = Server(registry=registry, host=host, port=port,
                                ready=lambda: _ready(loop, keeper)).start()
            except OSError as e:
                raise ScalerError(f"cannot listen on {listen or cfg.listen}: {e.strerror or e}") from e
            stack.callback(server.stop)
        return Controller(loop, server, keeper, notifier, aws, stack, tuple(skipped))
    except BaseException:
        stack.close()
        raise


def _ready(loop: Loop, keeper: LeaseKeeper) -> tuple[bool, str]:
    """The loop's readiness, except that a copy which cannot reach the lease is not a healthy standby."""
    if keeper.error is not None and not keeper.leader:
        return False, f"cannot reach the lease: {keeper.error}"
    return loop.ready()


def _groups(loaded: Loaded, ctx: TargetContext, *, dry_run: bool) -> tuple[list[Group], list[Skipped]]:
    """Each policy with its targets built. A real run refuses a target it cannot build; a dry run, which only
    looks, leaves it out with a warning (and a policy left with no target), so the rest can still be shown."""
    groups, skipped = [], []
    for p in loaded.policies:
        labels, targets = [], []
        for t in p.targets:
            try:
                targets.append(t.config.build(ctx))
                labels.append(t.label)
            except ScalerError as e:
                if not dry_run:
                    raise
                skipped.append(Skipped(p.policy.name, t.label, t.config.kind, str(e)))
                log.warning("policy %s: target %s (%s) left out of this dry run: %s", p.policy.name, t.label,
                            t.config.kind, e, extra={"policy": p.policy.name, "target": t.label})
        if not targets:
            log.warning("policy %s: no target could be built; the policy is left out of this dry run",
                        p.policy.name, extra={"policy": p.policy.name})
            continue
        g = Group(policy=p.policy, target_label=p.target_label, labels=tuple(labels), targets=tuple(targets))
        g.bind(loaded.config.health_rules)
        groups.append(g)
    if not groups:
        raise ScalerError("no target could be built: " + "; ".join(f"{s.label} ({s.kind}): {s.why}" for s in skipped))
    return groups, skipped


def _runbook_label(loaded: Loaded):
    """The runbook a condition's alert would start, as its `runbook` label (from the first trigger rule matching
    its labels, as the dispatch picks it), so Alertmanager can route or link by it."""
    rb = loaded.config.runbooks
    if rb is None or not rb.triggers:
        return None
    rules = list(rb.triggers)

    def label(labels: Mapping[str, str]) -> dict[str, str]:
        rule = next((r for r in rules if r.matches(dict(labels))), None)
        return {"runbook": rule.runbook} if rule is not None else {}

    return label


class _PlanOnly:
    """The runbook service as a dry run sees it: every run it starts is planned and journaled, never run (a
    plan keeps no idempotency key, so it never stands in for the real controller's run of the same event)."""

    def __init__(self, service):
        self._service = service

    def start(self, runbook, params, *, trigger, dry_run=False, require_approval=False):
        return self._service.start(runbook, params, trigger=trigger, dry_run=True)


def _runbook_dispatch(loaded: Loaded, stack: ExitStack, aws: AwsClients, *, dry_run: bool = False):
    """Health events start runbooks through the same trigger rules and dedup as Alertmanager alerts; in a dry
    run they only plan them (journaled with status "planned"): shadow mode changes nothing."""
    rb = loaded.config.runbooks
    if rb is None:
        return None
    from datetime import UTC, datetime

    from scaler.alerts.dispatch import Dispatcher
    from scaler.alerts.fit import check_rules_fit
    from scaler.alerts.payload import synthetic_payload
    from scaler.runbook.service import RunbookService

    service = RunbookService(runbooks_dir=rb.dir, journal_path=rb.journal, audit_path=rb.audit,
                             aws=aws.settings, http_timeout=rb.http_timeout)
    check_rules_fit(list(rb.triggers), service, loaded.source, prefix="runbooks.")
    dispatcher = Dispatcher(service=_PlanOnly(service) if dry_run else service, rules=list(rb.triggers),
                            workers=rb.workers)
    stack.callback(dispatcher.close)

    def on_event(e: HealthEvent) -> None:
        labels = event_labels(e)
        payload = synthetic_payload(labels, {"summary": e.evidence}, status=e.status,  # type: ignore[arg-type]
                                    starts_at=datetime.fromtimestamp(e.since, UTC), receiver="health-rules")
        for outcome in dispatcher.submit(payload, kind="health-rule", who="scaler/health-rules"):
            log.info("health rule %s -> %s", e.rule.name, outcome.as_json())

    return on_event
