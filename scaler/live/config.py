"""The `scaler run` config: Prometheus, policies and their targets, state store, lease, HTTP, notifications,
health rules. Loaded in two passes so every problem is reported at once, each naming its field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator

from scaler import yamlio as cfgio
from scaler.alerts.rules import Rule, check_rules
from scaler.aws import AwsSection
from scaler.errors import ConfigError, Problem
from scaler.live.health import HealthRule
from scaler.notify import Channel, NotifyContext
from scaler.notify.registry import CHANNELS, DEFAULT
from scaler.policy.load import load_policy
from scaler.policy.model import Policy
from scaler.registry import by_kind
from scaler.retry import RetryPolicy
from scaler.sources.base import SourceConfig
from scaler.sources.registry import SOURCES
from scaler.store.base import LeaseConfig, StoreConfig
from scaler.store.registry import LEASES, STORES
from scaler.targets.base import TargetConfig
from scaler.targets.registry import KINDS
from scaler.units import PositiveSeconds, split_listen
from scaler.yamlio import Strict

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class PolicyEntry(Strict):
    """One policy and the targets it scales; each target is matched to query results by one label."""

    policy: Path = Field(description="Policy YAML file (or HPA manifest), relative to this config")
    target_label: LabelName = Field(description="Label whose value names the target in every query's "
                                    "result, e.g. service; each query must aggregate `by` it")
    targets: list[dict[str, Any]] = Field(min_length=1, description="Targets: `label` (the value of "
                                          "target_label), `kind`, and that kind's fields")


class KubernetesSection(Strict):
    in_cluster: bool | None = Field(None, description="None: in-cluster when running in a pod, else kubeconfig")
    kubeconfig: Path | None = Field(None, description="kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
    context: str | None = Field(None, description="kubeconfig context")
    timeout: PositiveSeconds = Field(10.0, description="Seconds per API request")


class RetrySection(Strict):
    """Retries of provider calls (target reads and writes) on throttling, 5xx and connection errors."""

    attempts: int = Field(4, ge=1, le=20, description="Tries per call, the first included")
    initial: PositiveSeconds = Field(0.2, description="Seconds before the first retry; doubles each time")
    max_delay: PositiveSeconds = Field(5.0, description="Cap on one delay, seconds")


class RunbooksSection(Strict):
    """Where health-rule events start runbooks, through the same trigger rules as `scaler serve`."""

    dir: Path = Field(description="Directory of runbook YAML files")
    journal: Path = Field(description="Run journal (SQLite)")
    audit: Path = Field(description="Runbook audit log (JSON lines)")
    http_timeout: PositiveSeconds = Field(5.0, description="Timeout of runbook HTTP actions, seconds")
    workers: int = Field(2, ge=1, le=16, description="Runs that may start at the same time")
    triggers: list[Rule] = Field(description="Event -> runbook rules; match on alertname (the health rule's "
                                 "name), policy, target, severity and the rule's labels")

    @field_validator("triggers")
    @classmethod
    def _unique(cls, rules: list[Rule]) -> list[Rule]:
        return check_rules(rules)


class RunConfig(Strict):
    """The `scaler run` config. Relative paths are relative to the config file's directory."""

    listen: str = Field("127.0.0.1:9464", description="host:port for /metrics, /healthz, /readyz")
    prometheus: dict[str, Any] = Field(description="url, timeout, stale_after and auth (docs/live-loop.md)")
    state: dict[str, Any] = Field({"kind": "sqlite", "path": "scaler-state.db"},
                                  description="Where decision state persists: sqlite (path) or dynamodb (table)")
    lease: dict[str, Any] = Field({"kind": "solo"},
                                  description="Leader election: solo (one controller) or dynamodb (table, ttl)")
    aws: AwsSection = Field(default_factory=AwsSection)
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)
    audit: Path | None = Field(Path("scaler-decisions.jsonl"), description="Decision audit log (JSON lines)")
    ready_after: PositiveSeconds | None = Field(
        None, description="/readyz fails when no tick succeeded for this long (default: 3 policy intervals)")
    retry: RetrySection = Field(default_factory=RetrySection)
    workers: int = Field(16, ge=1, le=256, description="Provider calls in flight at once (reads and writes)")
    notify: list[dict[str, Any]] = Field(default_factory=list, description="Notification channels: each has a "
                                         "`kind` (slack when left out), `name`, `severities` and that kind's fields")
    health_rules: list[HealthRule] = Field(default_factory=list)
    runbooks: RunbooksSection | None = None
    policies: list[PolicyEntry] = Field(min_length=1)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retry.attempts, initial=self.retry.initial, max_delay=self.retry.max_delay)


@dataclass(frozen=True)
class TargetSpec:
    label: str  # the value of the policy's target_label
    config: TargetConfig  # the kind's own config model; config.build(ctx) makes the target


@dataclass(frozen=True)
class PolicySpec:
    policy: Policy
    file: Path
    target_label: str
    targets: tuple[TargetSpec, ...]


@dataclass(frozen=True)
class Loaded:
    """A validated config with everything resolved: paths absolute, sub-configs typed, policies loaded."""

    source: Path
    config: RunConfig
    prometheus: SourceConfig
    state: StoreConfig
    lease: LeaseConfig
    policies: tuple[PolicySpec, ...]
    channels: tuple[Channel, ...]  # built, their secrets read (held inside, never shown)
    warnings: tuple[Problem, ...] = ()  # what was left out instead of refused (load_run_config(strict=False))

    @property
    def base(self) -> Path:
        return self.source.parent


def _at(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else base / p


def load_run_config(path: str | Path, *, strict: bool = True) -> Loaded:
    """Read, validate and resolve a run config; one ConfigError lists every problem found.

    The pluggable sections (prometheus, state, lease, each target, each notification channel) and the policy
    files are checked even when the top level has problems, so a first run shows everything that needs fixing.

    strict=False is for looking without acting (`run --dry-run`, `status`): a notification channel whose
    secret cannot be read is left out, with a warning in `Loaded.warnings` naming it, instead of refusing the
    whole config. A config that does not validate is refused either way.
    """
    source = Path(path)
    raw = cfgio.read_yaml(source)
    if not isinstance(raw, dict):
        raise ConfigError(source, "expected a mapping at the top level")
    base = source.parent
    problems: list[Problem] = []
    cfg: RunConfig | None = None
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += cfgio.problems_from(e)

    def section(name: str) -> dict[str, Any] | None:
        value = raw.get(name, RunConfig.model_fields[name].default)
        return value if isinstance(value, dict) else None  # otherwise the first pass said why

    prom = state = lease = None
    if (found := section("prometheus")) is not None:
        # the section names no kind: Prometheus is the one source so far, and the default
        prom = by_kind(SOURCES, found, where="prometheus", problems=problems, default="prometheus")
    if (found := section("state")) is not None:
        state = by_kind(STORES, _paths(found, base), where="state", problems=problems)
    if (found := section("lease")) is not None:
        lease = by_kind(LEASES, found, where="lease", problems=problems)
    entries = raw.get("policies") if isinstance(raw.get("policies"), list) else []
    policies = _policies(entries, base, problems)

    if cfg is not None:
        _check_rules(cfg, policies, problems)
    notify = raw.get("notify") if isinstance(raw.get("notify"), list) else []
    warnings: list[Problem] = []
    channels = _channels(notify, base, problems, warnings if not strict else problems)
    if problems or cfg is None or prom is None or state is None or lease is None:
        raise ConfigError(source, problems)
    resolved = cfg.model_copy(update={
        "audit": _at(base, cfg.audit) if cfg.audit else None,
        "runbooks": _runbook_paths(cfg.runbooks, base),
    })
    return Loaded(source, resolved, prom, state, lease, tuple(policies), channels, tuple(warnings))


def _policies(entries: list[Any], base: Path, problems: list[Problem]) -> list[PolicySpec]:
    """Load each entry's policy file and type its targets (entries the first pass rejected are skipped)."""
    policies: list[PolicySpec] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"policies[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("policy"), str):
            continue
        file = _at(base, Path(entry["policy"]))
        try:
            policy = load_policy(file)
        except ConfigError as e:
            problems += [Problem(f"{where}.policy ({file})", str(p)) for p in e.problems]
            continue
        if policy.name in names:
            problems.append(Problem(f"{where}.policy", f"policy name {policy.name!r} is already used by "
                                    f"policies[{names[policy.name]}]; names key the stored state"))
        names[policy.name] = i
        for m in policy.metrics:
            if not m.query:
                problems.append(Problem(f"{where}.policy ({file})", f"metric {m.name!r} has no query: the live "
                                        "loop needs PromQL for every metric"))
        targets, seen = [], set()
        for j, target in enumerate(entry.get("targets") if isinstance(entry.get("targets"), list) else []):
            tw = f"{where}.targets[{j}]"
            if not isinstance(target, dict):
                continue
            label = target.get("label")
            if not isinstance(label, str) or not label:
                problems.append(Problem(f"{tw}.label", "required: the value of target_label naming this target"))
                continue
            if label in seen:
                problems.append(Problem(f"{tw}.label", f"{label!r} is listed twice"))
            seen.add(label)
            typed = by_kind(KINDS, {k: v for k, v in target.items() if k != "label"}, where=tw, problems=problems)
            if typed is not None:
                targets.append(TargetSpec(label, typed))
        policies.append(PolicySpec(policy, file, str(entry.get("target_label")), tuple(targets)))
    return policies


def _paths(section: dict[str, Any], base: Path) -> dict[str, Any]:
    """A relative `path` in a pluggable section is relative to the config file."""
    if isinstance(section.get("path"), str) and not Path(section["path"]).is_absolute():
        return {**section, "path": str(base / section["path"])}
    return section


def _runbook_paths(rb: RunbooksSection | None, base: Path) -> RunbooksSection | None:
    if rb is None:
        return None
    return rb.model_copy(update={"dir": _at(base, rb.dir), "journal": _at(base, rb.journal),
                                 "audit": _at(base, rb.audit)})


def _check_rules(cfg: RunConfig, policies: list[PolicySpec], problems: list[Problem]) -> None:
    """A health rule must name a policy that exists and a metric that policy has."""
    by_name = {p.policy.name: p.policy for p in policies}
    seen: set[str] = set()
    for i, rule in enumerate(cfg.health_rules):
        where = f"health_rules[{i}]"
        if rule.name in seen:
            problems.append(Problem(f"{where}.name", f"duplicate rule name {rule.name!r}"))
        seen.add(rule.name)
        if rule.policy is not None and rule.policy not in by_name:
            problems.append(Problem(f"{where}.policy", f"no policy named {rule.policy!r} in policies"))
            continue
        if rule.metric is None:
            continue
        scope = [by_name[rule.policy]] if rule.policy else list(by_name.values())
        if not any(rule.metric in {m.name for m in p.metrics} for p in scope):
            problems.append(Problem(f"{where}.metric", f"no metric {rule.metric!r} in "
                                    + (f"policy {rule.policy!r}" if rule.policy else "any policy")))


def _channels(entries: list[Any], base: Path, problems: list[Problem],
              unavailable: list[Problem]) -> tuple[Channel, ...]:
    """Type each `notify` entry by its kind (slack when it names none, as every entry did before kinds) and
    build it, reading its secrets. A channel that validates but cannot be built (a secret not readable) goes to
    `unavailable`, which is `problems` when the config is strict and the warnings otherwise."""
    out: list[Channel] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"notify[{i}]"
        typed = by_kind(CHANNELS, entry, where=where, problems=problems, default=DEFAULT)
        if typed is None:
            continue
        if typed.name in names:
            problems.append(Problem(f"{where}.name", f"{typed.name!r} is already the name of "
                                    f"notify[{names[typed.name]}]"))
            continue
        names[typed.name] = i
        try:
            out.append(typed.build(NotifyContext(base_dir=base)))
        except ConfigError as e:
            fix = "" if unavailable is problems else f" (channel {typed.name} is off)"
            unavailable += [Problem(f"{where}.{p.where}" if p.where else where, p.what + fix) for p in e.problems]
    return tuple(out)
