"""The controller's lease keeper and readiness, with fakes of the loop's interfaces; and its run config, whose
pluggable sections are parsed by kind and whose secrets are read by scaler.secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.clock import FakeClock
from scaler.errors import ConfigError, PermanentError
from scaler.live.config import load_run_config
from scaler.live.controller import LeaseKeeper, _ready
from scaler.live.loop import Group, Loop
from scaler.notify.slack import SlackChannel
from scaler.sources.prometheus import PrometheusConfig
from scaler.store.base import StoreContext
from scaler.store.lease import DynamoLease, DynamoLeaseConfig
from scaler.store.sqlite import SqliteStore, SqliteStoreConfig
from scaler.targets.aws_asg import AsgConfig
from scaler.targets.base import TargetContext
from scaler.targets.dry_run import DryRunConfig
from tests.conftest import make_policy
from tests.support.fake_live import FakeLease, FakeSource, FakeTarget, MemoryStore


class BrokenLease(FakeLease):
    def acquire(self, now: float) -> bool:
        raise PermanentError("dynamodb UpdateItem: ResourceNotFoundException (HTTP 400)", code="ResourceNotFound")


def loop_with(lease) -> Loop:
    pol = make_policy(metrics=[{"name": "cpu", "query": "cpu", "target": 70, "window": {"type": "last"}}])
    g = Group(policy=pol, target_label="service", labels=("a",), targets=(FakeTarget("a"),))
    return Loop([g], source=FakeSource({"cpu": {"a": 70}}), store=MemoryStore(), lease=lease, clock=FakeClock())


def test_a_copy_that_cannot_reach_the_lease_is_not_a_ready_standby():
    lease = BrokenLease(leader=False)
    keeper = LeaseKeeper(lease, clock=FakeClock(), every=5)
    assert keeper.beat() is False
    ok, why = _ready(loop_with(lease), keeper)
    assert not ok and "ResourceNotFoundException" in why


def test_a_follower_that_reaches_the_lease_is_a_ready_standby_and_a_leader_needs_a_tick():
    lease = FakeLease(leader=False)
    keeper = LeaseKeeper(lease, clock=FakeClock(), every=5)
    keeper.beat()
    loop = loop_with(lease)
    assert _ready(loop, keeper) == (True, "follower: standing by")
    lease.leader = True
    keeper.beat()
    assert not _ready(loop, keeper)[0]  # no tick yet
    loop.tick(loop.groups[0])
    assert _ready(loop, keeper) == (True, "ok")


# --- the run config: every pluggable section parsed by its kind, every secret read by scaler.secrets ---

POLICY = {
    "name": "web",
    "replicas": {"min": 1, "max": 20},
    "metrics": [{"name": "cpu", "query": "avg by (service) (cpu)", "target": 70, "window": {"type": "last"}}],
}
URL = "https://hooks.example/T0/B0/s3cr3t-webhook"


def write_config(tmp_path: Path, **over: Any) -> Path:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    config = {
        "prometheus": {"url": "http://127.0.0.1:9090"},
        "state": {"kind": "sqlite", "path": "state/scaler.db"},
        "lease": {"kind": "dynamodb", "table": "leases", "ttl": "30s"},
        "policies": [{"policy": "policy.yaml", "target_label": "service", "targets": [
            {"label": "a", "kind": "dry-run", "name": "a", "replicas": 2},
            {"label": "b", "kind": "aws-asg", "name": "web-b", "region": "eu-west-1"},
        ]}],
        **over,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_each_pluggable_section_is_parsed_by_its_kind_and_builds_its_object(tmp_path: Path) -> None:
    loaded = load_run_config(write_config(tmp_path))

    assert isinstance(loaded.prometheus, PrometheusConfig)  # the section names no kind: prometheus is the default
    assert loaded.state == SqliteStoreConfig(path=tmp_path / "state" / "scaler.db")  # relative to the config file
    assert loaded.lease == DynamoLeaseConfig(table="leases", ttl=30.0)
    assert [(t.label, t.config) for t in loaded.policies[0].targets] == [
        ("a", DryRunConfig(name="a", replicas=2)), ("b", AsgConfig(name="web-b", region="eu-west-1"))]
    ctx = StoreContext(clock=FakeClock(), holder="pod-a")
    assert isinstance(loaded.state.build(ctx), SqliteStore)
    assert isinstance(loaded.lease.build(ctx), DynamoLease)
    assert loaded.policies[0].targets[0].config.build(TargetContext()).read().desired == 2


def test_every_problem_in_every_section_is_named_by_its_path_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        prometheus={"url": "prometheus:9090", "kind": "prometheus"},
        state={"kind": "postgres", "dsn": "x"},
        lease={"kind": "dynamodb", "table": "leases", "ttl": 0},
        policies=[{"policy": "policy.yaml", "target_label": "service", "targets": [
            {"label": "a", "kind": "nomad"},
            {"label": "b", "kind": "aws-ecs", "cluster": "shop", "region": 7},
            {"kind": "dry-run", "name": "c"},
        ]}],
    )
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert [p.where for p in caught.value.problems] == [
        "prometheus.url",
        "state.kind",
        "lease.ttl",
        "policies[0].targets[0].kind",
        "policies[0].targets[1].service",
        "policies[0].targets[1].region",
        "policies[0].targets[2].label",
    ]
    problems = {p.where: p.what for p in caught.value.problems}
    assert problems["state.kind"] == "expected one of dynamodb, sqlite, got 'postgres'"
    assert problems["policies[0].targets[0].kind"] == ("expected one of aws-asg, aws-ecs, dry-run, kubernetes, "
                                                      "got 'nomad'")
    assert str(caught.value).startswith(f"{path}: invalid config (7 problems)")


@pytest.mark.parametrize("section", ["state", "lease"])
def test_a_section_without_a_kind_is_refused_not_left_empty(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_run_config(write_config(tmp_path, **{section: {}}))
    assert [p.where for p in caught.value.problems] == [f"{section}.kind"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (URL.encode() + "-ünï".encode("latin-1"), "is not UTF-8 text"),
        (URL.encode() * 2000, "is larger than 65536 bytes"),
        (b" \n", "is empty"),
        (None, "No such file or directory"),
    ],
    ids=["not-utf-8", "oversized", "empty", "missing"],
)
def test_a_webhook_url_file_that_cannot_serve_names_the_field_not_the_url(
        tmp_path: Path, content: bytes | None, says: str) -> None:
    if content is not None:
        (tmp_path / "hook-url").write_bytes(content)
    path = write_config(tmp_path, notify=[{"name": "oncall", "url_file": "hook-url"}])
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    (problem,) = caught.value.problems
    assert problem.where == "notify[0].url_file" and says in problem.what
    assert str(tmp_path / "hook-url") in problem.what
    assert "s3cr3t" not in str(caught.value)


def test_a_missing_webhook_url_variable_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALER_TEST_HOOK", raising=False)
    path = write_config(tmp_path, notify=[{"name": "oncall", "url_env": "SCALER_TEST_HOOK"}])
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert [(p.where, p.what) for p in caught.value.problems] == [
        ("notify[0].url_env", "environment variable SCALER_TEST_HOOK is not set")]

    monkeypatch.setenv("SCALER_TEST_HOOK", f" {URL}\n")
    loaded = load_run_config(path)
    (channel,) = loaded.channels
    assert isinstance(channel, SlackChannel) and channel.name == "oncall"  # no kind: the chat webhook, as before
    assert channel._url == URL and URL not in repr(channel)


def test_a_webhook_url_is_never_echoed_when_it_is_not_a_url(tmp_path: Path) -> None:
    (tmp_path / "hook-url").write_text("s3cr3t-without-scheme\n")
    with pytest.raises(ConfigError) as caught:
        load_run_config(write_config(tmp_path, notify=[{"name": "oncall", "url_file": "hook-url"}]))
    assert [(p.where, p.what) for p in caught.value.problems] == [
        ("notify[0]", "the webhook URL must start with https:// or http://")]


# --- looking without acting: `run --dry-run` and `status` warn where a real run refuses ---


def test_a_channel_whose_secret_is_missing_refuses_a_real_run_and_warns_a_dry_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALER_TEST_HOOK", raising=False)
    monkeypatch.setenv("SCALER_TEST_HOOK_2", URL)
    path = write_config(tmp_path, notify=[{"name": "oncall", "url_env": "SCALER_TEST_HOOK"},
                                          {"name": "team", "url_env": "SCALER_TEST_HOOK_2"}])
    with pytest.raises(ConfigError):
        load_run_config(path)
    loaded = load_run_config(path, strict=False)
    assert [c.name for c in loaded.channels] == ["team"]
    assert [str(w) for w in loaded.warnings] == [
        "notify[0].url_env: environment variable SCALER_TEST_HOOK is not set (channel oncall is off)"]


def test_a_config_that_does_not_validate_is_refused_even_when_only_looking(tmp_path: Path) -> None:
    path = write_config(tmp_path, notify=[{"name": "oncall", "url_env": "HOOK", "kind": "pager"}])
    with pytest.raises(ConfigError) as caught:
        load_run_config(path, strict=False)
    assert [p.where for p in caught.value.problems] == ["notify[0].kind"]


def kube_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, lease={"kind": "solo"}, kubernetes={"kubeconfig": "no-such-kubeconfig",
                                                                      "in_cluster": False},
                        policies=[{"policy": "policy.yaml", "target_label": "service", "targets": [
                            {"label": "a", "kind": "dry-run", "name": "a", "replicas": 2},
                            {"label": "k", "kind": "kubernetes", "namespace": "shop", "name": "checkout"},
                        ]}])


def test_a_dry_run_leaves_out_a_target_it_cannot_build_and_says_which(tmp_path: Path, caplog) -> None:
    from scaler.errors import ScalerError
    from scaler.live.controller import build

    loaded = load_run_config(kube_config(tmp_path))
    with pytest.raises(ScalerError):  # a real run refuses: it would scale what it was given
        build(loaded, serve_http=False)
    with build(loaded, dry_run=True, serve_http=False) as c:
        assert [g.labels for g in c.loop.groups] == [("a",)]
        (skip,) = c.skipped
        assert (skip.policy, skip.label, skip.kind) == ("web", "k", "kubernetes") and "kubeconfig" in skip.why
    assert any("target k (kubernetes) left out of this dry run" in r.getMessage() for r in caplog.records)


def test_a_dry_run_plans_the_runbooks_its_health_events_would_start(tmp_path: Path) -> None:
    from scaler.live.controller import build
    from scaler.live.health import HealthEvent, HealthRule
    from scaler.runbook.service import RunbookService

    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "scale-standby.yaml").write_text(yaml.safe_dump({
        "name": "scale-standby", "description": "Bring the standby group up",
        "steps": [{"id": "up", "action": "asg.set_desired", "inputs": {"group": "standby", "desired": 3}}]}))
    rule = {"name": "errors-high", "metric": "cpu", "above": 90}
    section = {"dir": "runbooks", "journal": "journal.db", "audit": "runbooks.jsonl",
               "triggers": [{"name": "standby", "match": {"alertname": "errors-high"}, "auto": True,
                             "runbook": "scale-standby"}]}
    loaded = load_run_config(write_config(tmp_path, lease={"kind": "solo"}, health_rules=[rule], runbooks=section))
    with build(loaded, dry_run=True, serve_http=False) as c:
        event = HealthEvent(HealthRule.model_validate(rule), "web", "a", "firing", 1_700_000_000.0, "cpu 95")
        c.loop.on_event(event)
    (run,) = RunbookService(runbooks_dir=runbooks, journal_path=tmp_path / "journal.db",
                            audit_path=tmp_path / "runbooks.jsonl").status()
    assert (run.runbook, run.status, run.trigger.kind) == ("scale-standby", "planned", "health-rule")
    assert run.trigger.key is None  # a plan never stands in for the real controller's run of the same event
