"""What a seasonal window may ask for: a period of whole buckets within a week and 10,000 buckets, a level and a
lead that fit in the period, buckets no shorter than a tick, never the only kind of window in a policy, and its
settings nowhere else. Each refusal is one ConfigError naming the file and the field, raised while loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scaler.errors import ConfigError
from scaler.policy.load import load_policy
from scaler.policy.model import Window

CPU = {"name": "cpu", "target": 70, "window": {"type": "last"}}
SEASONAL_FIELDS = {"period": "1d", "bucket": "5m", "level": "30m", "min_correlation": 0.5, "headroom_q": 95}


def seasonal(**window) -> dict:
    return {"name": "daily", "target": 70, "window": {"type": "seasonal", **window}}


def policy_file(tmp_path: Path, *metrics: dict, **over) -> Path:
    """A policy of cpu (last) and then `metrics`, with `over` laid over its top level."""
    doc = {"name": "p", "replicas": {"min": 1, "max": 20}, "metrics": [CPU, *metrics], **over}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def refusal(path: Path):
    """The one problem loading `path` reports."""
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert err.value.source == str(path)
    (problem,) = err.value.problems
    return problem


# The window's own rules: the error is at metrics[1].window and its message names the field.
# (id, the seasonal window's settings, what the error says)
WINDOW_REFUSED = [
    ("no period", {}, "type: seasonal needs a period, e.g. period: 1d"),
    ("length", {"period": "1d", "length": 60}, "length does not apply to type: seasonal"),
    ("period 8d", {"period": "8d"}, "period must be more than 0 and at most 7d, got 8d"),
    ("period 0", {"period": 0}, "period must be more than 0"),
    ("period not whole buckets", {"period": "1d", "bucket": "7m"}, "period (1d) must be a whole number of buckets"),
    ("bucket over the period", {"period": "1h", "bucket": "2h"}, "bucket must be more than 0 and at most the period"),
    ("bucket 0", {"period": "1d", "bucket": 0}, "bucket must be more than 0"),
    # a week of 1-minute buckets: 2 x 10,080 = 20,160 bucket means per target
    ("too many buckets", {"period": "1w", "bucket": "1m"}, "20,160 buckets per target, more than 10,000"),
    ("level below a bucket", {"period": "1d", "level": "1m"}, "level must be from one bucket (5m) to the period"),
    ("level over the period", {"period": "1h", "level": "2h"}, "level must be from one bucket (5m) to the period"),
    # 1h less one 5-minute bucket is 55 minutes: a lead of 56 would read the bucket still being filled
    ("lead past the period", {"period": "1h", "lead": "56m"}, "lead (56m) must be at most the period less one"),
]

# Field checks: the error is at the field itself. (id, the seasonal window's settings, field, what it says)
FIELD_REFUSED = [
    ("lead over a day", {"period": "1w", "lead": "25h"}, "lead", "must be at most 1d"),
    ("min_correlation 1.5", {"period": "1d", "min_correlation": 1.5}, "min_correlation", "less than or equal to 1"),
    ("min_correlation -2", {"period": "1d", "min_correlation": -2}, "min_correlation", "greater than or equal to -1"),
    ("headroom_q 0", {"period": "1d", "headroom_q": 0}, "headroom_q", "greater than 0"),
    ("headroom_q 101", {"period": "1d", "headroom_q": 101}, "headroom_q", "less than or equal to 100"),
]

# Checked by the policy, which knows the interval: the message starts with the field's path.
# (id, the seasonal window's settings, interval, what the error says)
POLICY_REFUSED = [
    ("bucket under the interval", {"period": "1d", "bucket": "30s"}, 60,
     "metrics[1].window.bucket: 30s is shorter than the interval (1m): a bucket must hold at least one tick"),
    # a day of tick-to-tick changes at 1 s is 86,400 kept for the headroom
    ("headroom over too many ticks", {"period": "1d", "level": "1d", "headroom_q": 95}, 1,
     "metrics[1].window.level: the headroom over 1d at an interval of 1s is 86,400 samples per target"),
]  # fmt: skip


@pytest.mark.parametrize("window, what", [r[1:] for r in WINDOW_REFUSED], ids=[r[0] for r in WINDOW_REFUSED])
def test_a_seasonal_window_out_of_bounds_is_one_error_naming_the_field(tmp_path, window, what):
    problem = refusal(policy_file(tmp_path, seasonal(**window)))
    assert problem.where == "metrics[1].window", problem
    assert what in problem.what, problem


@pytest.mark.parametrize("window, field, what", [r[1:] for r in FIELD_REFUSED], ids=[r[0] for r in FIELD_REFUSED])
def test_a_seasonal_setting_out_of_range_is_refused_at_its_field(tmp_path, window, field, what):
    problem = refusal(policy_file(tmp_path, seasonal(**window)))
    assert problem.where == f"metrics[1].window.{field}", problem
    assert what in problem.what, problem


@pytest.mark.parametrize("window, interval, what", [r[1:] for r in POLICY_REFUSED], ids=[r[0] for r in POLICY_REFUSED])
def test_a_seasonal_window_too_fine_for_the_interval_is_refused_naming_the_field(tmp_path, window, interval, what):
    problem = refusal(policy_file(tmp_path, seasonal(**window), interval=interval))
    assert problem.where == "", problem
    assert problem.what.startswith(what), problem


@pytest.mark.parametrize("field", list(SEASONAL_FIELDS))
@pytest.mark.parametrize("wtype", ["last", "ewma", "mean", "max", "percentile", "trend"])
def test_a_seasonal_setting_on_another_window_is_refused_by_name(tmp_path, wtype, field):
    metric = {"name": "m", "target": 70, "window": {"type": wtype, field: SEASONAL_FIELDS[field]}}
    problem = refusal(policy_file(tmp_path, metric))
    assert (problem.where, problem.what) == ("metrics[1].window", f"{field} applies only to type: seasonal")


def test_every_seasonal_setting_on_another_window_is_named_at_once(tmp_path):
    metric = {"name": "m", "target": 70, "window": {"type": "mean", "period": "1d", "bucket": "5m"}}
    assert "period, bucket" in refusal(policy_file(tmp_path, metric)).what


def test_a_policy_of_only_seasonal_windows_is_refused_saying_why(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "replicas": {"min": 1, "max": 20},
                "metrics": [seasonal(period="1d"), {**seasonal(period="1w"), "name": "weekly"}],
            }
        )
    )
    problem = refusal(path)
    assert problem.where == ""
    assert problem.what.startswith("a seasonal window asks only where the history shows its pattern")
    assert "at least one metric with another window" in problem.what


@pytest.mark.parametrize(
    "window, interval",
    [
        ({"period": "1d"}, 15),
        ({"period": "1w", "bucket": "10m", "lead": "1d"}, 15),
        # exactly 10,000 buckets: two periods of 5,000 one-minute buckets
        ({"period": 5000 * 60, "bucket": "1m"}, 15),
        ({"period": "1h", "lead": "55m", "level": "1h"}, 15),
        ({"period": "1d", "level": "5m"}, 15),
        ({"period": "1d", "bucket": "1m"}, 60),  # a bucket of one tick
        ({"period": "1d", "min_correlation": -1, "headroom_q": 100}, 15),
    ],
    ids=[
        "defaults",
        "weekly",
        "ten-thousand-buckets",
        "lead-period-less-a-bucket",
        "level-one-bucket",
        "bucket-one-tick",
        "edge-correlation-and-q",
    ],
)
def test_the_edges_of_each_range_are_accepted(tmp_path, window, interval):
    policy = load_policy(policy_file(tmp_path, seasonal(**window), interval=interval))
    assert policy.metrics[1].window.type == "seasonal"


def test_the_defaults_and_the_rows_a_window_keeps():
    w = Window(type="seasonal", period="1d")
    assert (w.effective_bucket, w.effective_level, w.effective_lead, w.effective_min_correlation) == (
        300.0,
        1800.0,
        90.0,
        0.5,
    )
    # a day of 5-minute buckets, twice: 576; no headroom, so no tick-to-tick changes
    assert (w.buckets, w.changes(15), w.slots(15)) == (576, 0, 576)
    # with a headroom over the 30-minute level at 15 s: 120 changes more
    h = Window(type="seasonal", period="1d", headroom_q=95)
    assert (h.buckets, h.changes(15), h.slots(15)) == (576, 120, 696)
    weekly = Window(type="seasonal", period="1w", bucket="10m")
    assert weekly.buckets == 2016
    # the other windows keep no buckets
    assert Window(type="mean", length=60).buckets == 0


def test_a_dumped_seasonal_window_validates_again_and_keeps_every_setting(tmp_path):
    """A policy dumped and validated again (how the tuner and the benchmarks edit one) is the same policy: the
    seasonal window's `length`, a default it may not be given, is left out of the dump."""
    pol = load_policy(policy_file(tmp_path, seasonal(period="1d", lead="2m", min_correlation=0.7, headroom_q=90)))
    for mode in ("python", "json"):
        dumped = pol.model_dump(mode=mode)
        assert "length" not in dumped["metrics"][1]["window"] and "length" in dumped["metrics"][0]["window"]
        again = type(pol).model_validate(dumped)
        assert again == pol and again.metrics[1].window.min_correlation == 0.7
