"""Incident triggers: alerts matched to runbooks by rules, each alert occurrence started once."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scaler.errors import ScalerError
from scaler.runbook.service import Trigger

log = logging.getLogger(__name__)

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)]

# ---------------------------------------------------------------------------------------------------------
# The Alertmanager webhook payload (version 4). Unknown keys are ignored so a newer Alertmanager that adds
# fields keeps working; every field the dispatch relies on is required and typed.


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Payload):
    """One alert as Alertmanager sends it; `fingerprint` identifies its label set."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime  # field names are Alertmanager's wire names
    endsAt: datetime
    generatorURL: str
    fingerprint: str = Field(min_length=1, max_length=128)


class Payload(_Payload):
    """A webhook notification: one group of alerts sharing a route and group labels."""

    version: Literal["4"]
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[Alert]
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    groupKey: str
    truncatedAlerts: int = Field(ge=0)


def synthetic_payload(
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    *,
    status: Literal["firing", "resolved"] = "firing",
    starts_at: datetime,
    receiver: str = "scaler",
) -> Payload:
    """A one-alert payload for callers that are not Alertmanager (health rules), fingerprinted like it."""
    # Same idea as Alertmanager's fingerprint: a stable hash of the sorted label set.
    digest = hashlib.sha256("\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items())).encode())
    alert = Alert(
        status=status,
        labels=labels,
        annotations=annotations or {},
        startsAt=starts_at,
        endsAt=datetime(1, 1, 1, tzinfo=UTC),
        generatorURL="",
        fingerprint=digest.hexdigest()[:16],
    )
    return Payload(
        version="4",
        receiver=receiver,
        status=status,
        alerts=[alert],
        groupLabels={},
        commonLabels=labels,
        commonAnnotations=alert.annotations,
        externalURL="",
        groupKey="",
        truncatedAlerts=0,
    )


# ---------------------------------------------------------------------------------------------------------
# Rule config. Parameter values are templates over the alert: "{{ labels.region }}", "{{ annotations.x }}",
# "{{ status }}", "{{ fingerprint }}". Deliberately not a general template language: alert contents come
# from whoever can post to Alertmanager, so nothing in them is ever evaluated.

_TEMPLATE = re.compile(r"\{\{\s*(labels\.[A-Za-z_][A-Za-z0-9_]*|annotations\.[A-Za-z_][A-Za-z0-9_]*"
                       r"|status|fingerprint|startsAt|receiver)\s*\}\}")


class TemplateError(ValueError):
    """A parameter template refers to something the alert does not have."""


def render(template: str, alert: Alert, receiver: str) -> str:
    """Fill `{{ ... }}` references from one alert; raise TemplateError naming a missing label."""

    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith(("labels.", "annotations.")):
            where, name = ref.split(".", 1)
            values = alert.labels if where == "labels" else alert.annotations
            if name not in values:
                raise TemplateError(f"alert has no {where[:-1]} {name!r}")
            return values[name]
        if ref == "startsAt":
            return alert.startsAt.astimezone(UTC).isoformat()
        return {"status": alert.status, "fingerprint": alert.fingerprint, "receiver": receiver}[ref]

    return _TEMPLATE.sub(one, template)


def _check_template(value: str) -> str:
    leftover = _TEMPLATE.sub("", value)
    if "{{" in leftover or "}}" in leftover:
        raise ValueError(
            f"unknown template in {value!r}: use {{{{ labels.NAME }}}}, {{{{ annotations.NAME }}}}, "
            "{{ status }}, {{ fingerprint }}, {{ startsAt }} or {{ receiver }}"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(_Strict):
    """A runbook to start and how: right away, or as a pending run that someone must approve."""

    runbook: Name = Field(description="Runbook name (a file <name>.yaml in the runbooks directory)")
    params: dict[Name, str] = Field(
        default_factory=dict, description="Runbook parameters; values are templates over the alert"
    )
    auto: bool = Field(False, description="true: run now; false (default): create a run pending approval")
    dry_run: bool = Field(False, description="Plan and journal the run without calling any provider")

    @field_validator("params")
    @classmethod
    def _templates(cls, params: dict[str, str]) -> dict[str, str]:
        for value in params.values():
            _check_template(value)
        return params


class Rule(Action):
    """Alerts whose labels match start `runbook`; when they resolve, `on_resolved` (if set) starts."""

    name: Name = Field(description="Rule name, shown in the trigger and the audit log")
    match: dict[LabelName, str] = Field(
        default_factory=dict, description="Labels that must equal these values"
    )
    match_re: dict[LabelName, str] = Field(
        default_factory=dict, description="Labels that must fully match these regular expressions"
    )
    on_resolved: Action | None = Field(None, description="Recovery runbook started when the alert resolves")

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, patterns: dict[str, str]) -> dict[str, str]:
        for label, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{label}: not a valid regular expression: {e}") from None
        return patterns

    @model_validator(mode="after")
    def _some_matcher(self) -> Rule:
        # A rule without matchers would fire every runbook on every alert of the receiver.
        if not self.match and not self.match_re:
            raise ValueError("a rule needs at least one matcher in match or match_re")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        # Alertmanager anchors its regex matchers; so do we, so the same matcher means the same here.
        return all(labels.get(k) == v for k, v in self.match.items()) and all(
            re.fullmatch(p, labels.get(k, "")) is not None for k, p in self.match_re.items()
        )


def check_rules(rules: list[Rule]) -> list[Rule]:
    """Rule names must be unique: they appear in triggers and audit lines."""
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise ValueError(f"rule {i}: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return rules


# ---------------------------------------------------------------------------------------------------------
# Decide: which alert starts which runbook with which parameters and key. Pure, no I/O.


@dataclass(frozen=True)
class Planned:
    """One run to start: the runbook, its rendered parameters and the idempotency key."""

    fingerprint: str
    status: str
    rule: str
    runbook: str
    params: dict[str, str]
    key: str
    auto: bool
    dry_run: bool
    trigger: Trigger


Result = Literal["started", "pending", "queued", "duplicate", "unmatched", "error"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert: a run started/pending/queued, a duplicate, no rule, or an error."""

    fingerprint: str
    status: str
    result: Result
    rule: str | None = None
    runbook: str | None = None
    key: str | None = None
    run_id: str | None = None
    detail: str = ""

    def as_json(self) -> dict[str, str | None]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def idempotency_key(alert: Alert) -> str:
    """fingerprint + startsAt + status: one occurrence of one alert, firing or resolved.

    HA pairs and retries redeliver the same alert; a new occurrence (it resolved and fired again) has a new
    startsAt and so a new key.
    """
    starts = alert.startsAt.astimezone(UTC).isoformat()
    return f"alertmanager:{alert.fingerprint}:{starts}:{alert.status}"


def _why(alert: Alert) -> str:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"{name} {alert.status} since {alert.startsAt.astimezone(UTC).isoformat()}"
    text += f" [{alert.fingerprint}]" + (f": {summary}" if summary else "")
    return text[:500]


def plan(
    payload: Payload, rules: Iterable[Rule], *, kind: str = "alertmanager", who: str | None = None
) -> list[Planned | Outcome]:
    """For each alert, the first matching rule's firing or on_resolved action, or why nothing runs."""
    rules = list(rules)
    who = who or f"alertmanager/{payload.receiver}"
    out: list[Planned | Outcome] = []
    for alert in payload.alerts:
        # First match wins, as in an Alertmanager route tree without `continue`: one alert, one runbook.
        rule = next((r for r in rules if r.matches(alert.labels)), None)
        if rule is None:
            out.append(Outcome(alert.fingerprint, alert.status, "unmatched", detail="no rule matches"))
            continue
        action: Action | None = rule if alert.status == "firing" else rule.on_resolved
        if action is None:
            out.append(
                Outcome(alert.fingerprint, alert.status, "unmatched", rule=rule.name, detail="no on_resolved")
            )
            continue
        key = idempotency_key(alert)
        try:
            params = {k: render(v, alert, payload.receiver) for k, v in action.params.items()}
        except TemplateError as e:
            out.append(Outcome(alert.fingerprint, alert.status, "error", rule.name, action.runbook, key,
                               detail=f"params: {e}"))
            continue
        trigger = Trigger(kind=kind, who=who, why=f"rule {rule.name}: {_why(alert)}", key=key)
        out.append(Planned(alert.fingerprint, alert.status, rule.name, action.runbook, params, key,
                           action.auto, action.dry_run, trigger))
    return out


# ---------------------------------------------------------------------------------------------------------
# Apply: start the planned runs, once each.


class RunLike(Protocol):
    """The part of a RunRecord the dispatch reads."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...


class RunStarter(Protocol):
    """The part of RunbookService the dispatch needs."""

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
