"""What a policy file may ask for: every size and duration bounded, every number finite, each refusal one
ConfigError naming the file and the field, raised while loading, before any window or grid exists."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from scaler.errors import ConfigError
from scaler.policy.load import load_policy
from scaler.policy.model import MetricKind, Policy
from scaler.units import parse_duration

CPU = {"name": "cpu", "target": 70, "window": {"type": "last"}}
BASE = {"name": "p", "replicas": {"min": 1, "max": 20}, "metrics": [CPU]}


def policy_file(tmp_path: Path, text: str) -> Path:
    """BASE with `text` (YAML, so `.inf` and `1e400` are what a user would write) laid over it."""
    doc = {**BASE, **yaml.safe_load(text)}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc).replace("'.inf'", ".inf").replace("'.nan'", ".nan"))
    return path


def metric(**over) -> str:
    return yaml.safe_dump({"metrics": [{**CPU, **over}]})


# (id, YAML laid over a valid policy, the field the error names, what it says)
REFUSED = [
    ("interval 1ms", "interval: 1ms", "interval", "must be from 1s to 1h, got 1ms"),
    ("interval 0.5", "interval: 0.5", "interval", "must be from 1s to 1h"),
    ("interval 3601", "interval: 3601", "interval", "must be from 1s to 1h, got 1h1s"),
    ("interval 1e20", "interval: 1e20", "interval", "got 1e+20 s"),
    ("interval .inf", "interval: .inf", "interval", "finite"),
    ("interval .nan", "interval: .nan", "interval", "finite"),
    ("interval '1e400'", "interval: '1e400'", "interval", "finite"),
    ("window 100000h", metric(window={"type": "mean", "length": "100000h"}), "metrics[0].window.length",
     "at most 1d"),
    ("window 25h", metric(window={"type": "last", "length": "25h"}), "metrics[0].window.length",
     "at most 1d, got 1d1h"),
    ("lead 48h", metric(window={"type": "trend", "lead": "48h"}), "metrics[0].window.lead", "at most 1d"),
    ("half_life .inf", metric(window={"type": "ewma", "half_life": ".inf"}), "metrics[0].window.half_life",
     "finite"),
    ("target .inf", metric(target=".inf"), "metrics[0].target", "finite"),
    ("target .nan", metric(target=".nan"), "metrics[0].target", "finite"),
    ("scale_up_above .inf", metric(scale_up_above=".inf"), "metrics[0].scale_up_above", "finite"),
    ("error_rate target 1.5", metric(kind="error_rate", target=1.5), "metrics[0]",
     "above the highest error_rate reading (1)"),
    ("latency target 2e6 s", metric(kind="latency", target=2e6), "metrics[0]",
     "above the highest latency reading (1e+06)"),
    ("replicas 3e9", "replicas: {min: 1, max: 3000000000}", "replicas.max", "less than or equal to 2147483647"),
    ("replicas 1e40", "replicas: {min: 1, max: 10000000000000000000000000000000000000000}", "replicas.max",
     "less than or equal"),
    ("rate value 1e12", "behavior: {scale_up: {stabilization: 0, policies: [{type: pods, value: 1000000000000, "
     "period: 15}]}}", "behavior.scale_up.policies[0].value", "less than or equal to 2147483647"),
    ("cooldown .inf", "behavior: {scale_down: {stabilization: 0, cooldown: .inf, policies: [{type: pods, "
     "value: 1, period: 15}]}}", "behavior.scale_down.cooldown", "finite"),
    ("tolerance .inf", "tolerance: {up: .inf}", "tolerance.up", "finite"),
    ("panic window 48h", "panic: {window: 48h}", "panic.window", "at most 1d"),
    ("panic hold .inf", "panic: {hold: .inf}", "panic.hold", "finite"),
    ("slo .inf", "slo: {utilization: .inf}", "slo.utilization", "finite"),
    ("failure_threshold 1e11", "fallback: {failure_threshold: 100000000000, replicas: 2}",
     "fallback.failure_threshold", "less than"),
]


@pytest.mark.parametrize("text, where, what", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_an_unbounded_or_non_finite_setting_is_one_error_naming_file_and_field(tmp_path, text, where, what):
    path = policy_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert err.value.source == str(path)
    (problem,) = err.value.problems
    assert (problem.where, what in problem.what) == (where, True), problem


def test_a_window_of_more_than_ten_thousand_samples_at_the_interval_is_refused_naming_both(tmp_path):
    # 24 h is fine at 15 s (5,760 samples) but 17,280 samples at 5 s: the ring would be too long
    ok = policy_file(tmp_path, metric(window={"type": "percentile", "length": "24h"}) + "interval: 15s")
    assert load_policy(ok).metrics[0].window.slots(15) == 5760
    path = policy_file(tmp_path, metric(window={"type": "percentile", "length": "24h"}) + "interval: 5s")
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    (problem,) = err.value.problems
    assert problem.what.startswith("metrics[0].window.length: 1d at an interval of 5s is 17,280 samples")
    assert "more than 10,000" in problem.what


def test_a_panic_window_counts_its_samples_too(tmp_path):
    path = policy_file(tmp_path, "interval: 1s\npanic: {window: 3h}")
    with pytest.raises(ConfigError, match="panic.window: 3h at an interval of 1s is 10,800 samples"):
        load_policy(path)


def test_a_window_a_hundred_thousand_hours_long_is_refused_at_once(tmp_path):
    """It used to pass `policy validate` and then run for minutes building a 24 M-slot ring."""
    path = policy_file(tmp_path, metric(window={"type": "trend", "length": "100000h"}))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.window\.length: must be at most 1d, got 4166d16h"):
        load_policy(path)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("text", ["interval: 1s", "interval: 1h", metric(window={"type": "max", "length": "24h"}),
                                  metric(kind="error_rate", target=1), "replicas: {min: 0, max: 2147483647}"],
                         ids=["1s", "1h", "24h-window", "error-rate-1", "int32-max"])
def test_the_edges_of_each_range_are_accepted(tmp_path, text):
    load_policy(policy_file(tmp_path, text))


def test_more_than_sixteen_metrics_is_refused(tmp_path):
    many = yaml.safe_dump({"metrics": [{**CPU, "name": f"m{i}"} for i in range(17)]})
    with pytest.raises(ConfigError, match="metrics: List should have at most 16 items"):
        load_policy(policy_file(tmp_path, many))


def test_an_hpa_memory_target_in_bytes_is_a_utilization_within_range():
    """2Gi per replica (an HPA memory AverageValue) must stay a valid utilization target and reading."""
    p = Policy.model_validate({**BASE, "metrics": [{**CPU, "target": 2 * 2**30}]})
    low, high = p.metrics[0].kind.valid_range
    assert low == 0 and high >= 1e12 and MetricKind.error_rate.valid_range == (0.0, 1.0)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "inf", "1e400", 10**400, "9" * 400 + "h"],
                         ids=["inf", "nan", "'inf'", "'1e400'", "10**400", "400-digit-hours"])
def test_a_duration_is_always_finite(value):
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)
