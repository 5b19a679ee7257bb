"""HorizontalPodAutoscaler manifests read as policies: quantities, defaults, the legacy path without
behavior, and every problem named by its manifest field path."""

from __future__ import annotations

import pytest

from scaler.errors import ConfigError
from scaler.policy.hpa_manifest import parse_quantity, policy_from_manifest
from scaler.policy.load import load_policy
from scaler.policy.model import Behavior, MetricKind, Tolerance, default_scale_down, default_scale_up
from tests.conftest import ROOT

MANIFEST = ROOT / "tests" / "data" / "hpa-manifest.yaml"
U, G = MetricKind.utilization, MetricKind.gauge


# --- Manifest import ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [("500m", 0.5), ("1k", 1000), ("2Gi", 2 * 2**30), ("1.5", 1.5), ("100Mi", 100 * 2**20), ("1e3", 1000),
     ("250u", 0.00025), ("3M", 3e6), (7, 7), (0.25, 0.25), ("+2", 2), (".5", 0.5)],
    ids=lambda v: str(v),
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 Gi", "2gi", "1e", True, None])
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_manifest_import():
    """Every metric source, quantity suffixes, and a behavior that leaves scaleUp to HPA's defaults."""
    p = load_policy(MANIFEST)
    assert (p.name, p.algorithm, p.replicas.min, p.replicas.max, p.interval) == ("web", "hpa", 3, 40, 15)
    assert (p.target.kind, p.target.name) == ("kubernetes", "web")
    assert p.target.model_extra == {"ref_kind": "Deployment", "api_version": "apps/v1", "namespace": "shop"}
    got = [(m.name, m.kind, m.target, m.window.type) for m in p.metrics]
    assert got == [
        ("cpu", U, 70, "last"),
        ("memory", U, 2 * 2**30, "last"),
        ("sidecar.cpu", U, 0.5, "last"),
        ("packets-per-second", U, 1000, "last"),
        ("requests-per-second", U, 10_000, "last"),  # Object Value: ratio * ready
        ("queue_messages_ready", G, 30, "last"),  # External AverageValue: total / 30 per replica
    ]
    # Only the Resource Utilization target is a whole percent (GetResourceUtilizationRatio truncates it);
    # memory and sidecar.cpu are AverageValue targets, compared in milli-units like the Pods/Object metrics.
    assert [p.whole_percent(m) for m in p.metrics] == [True, False, False, False, False, False]
    # scaleUp only sets a tolerance: stabilization stays 0 even though scaleDown's default is 300.
    assert p.behavior.scale_up == default_scale_up()
    down = p.behavior.scale_down
    assert (down.stabilization, down.select) == (600, "min")
    assert [(r.type, r.value, r.period) for r in down.policies] == [("pods", 2, 60), ("percent", 10, 60)]
    assert (p.tolerance.up, p.tolerance.down) == (0.02, 0.05)


def test_manifest_defaults_without_behavior_take_the_legacy_path():
    """SetDefaults_HorizontalPodAutoscaler: minReplicas 1, metrics cpu Utilization 80; no behavior stays
    none, which is HPA's legacy normalization."""
    p = policy_from_manifest(
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "api"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 5}},
        source="inline",
    )
    assert (p.replicas.min, p.replicas.max, p.behavior, p.legacy) == (1, 5, None, True)
    assert [(m.name, m.kind, m.target) for m in p.metrics] == [("cpu", U, 80)]
    assert p.tolerance == Tolerance()


@pytest.mark.parametrize(
    "behavior,up_window,down_window",
    [({}, 0, 300), ({"scaleDown": {"stabilizationWindowSeconds": 60}}, 0, 60),
     ({"scaleUp": {"stabilizationWindowSeconds": 30, "selectPolicy": "Disabled"}}, 30, 300)],
    ids=["empty behavior: both defaults", "scaleDown only", "scaleUp only"],
)
def test_manifest_behavior_defaults_per_direction(behavior, up_window, down_window):
    """GenerateHPAScaleUpRules / GenerateHPAScaleDownRules fill every field left out, per direction."""
    p = policy_from_manifest(
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "api"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 5,
                  "behavior": behavior}},
        source="inline",
    )
    b = p.behavior
    assert (b.scale_up.stabilization, b.scale_down.stabilization) == (up_window, down_window)
    assert p.behavior.scale_up.policies == default_scale_up().policies
    assert p.behavior.scale_down.policies == default_scale_down().policies
    assert not p.legacy


def test_manifest_problems_are_all_reported_by_field_path(tmp_path):
    bad = tmp_path / "bad-hpa.yaml"
    bad.write_text(
        """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {kind: Deployment}
  minReplicas: 4
  maxReplicas: 2
  metric: []
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
    - type: Resource
      resource: {name: memory, target: {type: Utilization, averageUtilization: "high"}}
    - type: External
      external: {metric: {name: q}, target: {type: AverageValue, averageValue: 5 pods}}
    - type: Pods
      pods: {metric: {name: rps}, target: {type: Value, value: "10"}}
    - type: CheddarCheese
  behavior:
    scaleUp:
      selectPolicy: Fastest
      policies: [{type: Pods, value: 0, periodSeconds: 3600}]
    scaleDown:
      stabilizationWindowSeconds: 7200
      tolerance: -1
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_policy(bad)
    where = {p.where for p in err.value.problems}
    assert where == {
        "spec.metric",
        "spec.scaleTargetRef.name",
        "spec.maxReplicas",
        "spec.metrics[1].resource.target.averageUtilization",
        "spec.metrics[2].external.target.averageValue",
        "spec.metrics[3].pods.target.type",
        "spec.metrics[4].type",
        "spec.behavior.scaleUp.selectPolicy",
        "spec.behavior.scaleUp.policies[0].value",
        "spec.behavior.scaleUp.policies[0].periodSeconds",
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
        "spec.behavior.scaleDown.tolerance",
    }
    message = str(err.value)
    assert message.startswith(f"{bad}: invalid config (12 problems)")
    assert "spec.maxReplicas: must be at least minReplicas (4), got 2" in message


@pytest.mark.parametrize(
    "change,where",
    [({"apiVersion": "autoscaling/v1"}, "apiVersion"), ({"metadata": None}, "metadata"),
     ({"spec": "x"}, "spec")],
    ids=["autoscaling/v1 is another schema", "no metadata", "spec not a mapping"],
)
def test_manifest_header_problems(change, where):
    doc = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "api"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 5}} | change
    with pytest.raises(ConfigError) as err:
        policy_from_manifest(doc, source="hpa.yaml")
    assert where in {p.where for p in err.value.problems}
    assert str(err.value).startswith("hpa.yaml: invalid config")


def test_manifest_scale_to_zero_needs_an_external_metric():
    """minReplicas 0 is HPAScaleToZero: accepted with an Object/External metric, refused with cpu only."""
    base = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "q"}}
    ref = {"kind": "Deployment", "name": "worker"}
    queue = {"type": "External", "external": {"metric": {"name": "queue|depth"},
                                             "target": {"type": "AverageValue", "averageValue": "20"}}}
    p = policy_from_manifest(base | {"spec": {"scaleTargetRef": ref, "minReplicas": 0, "maxReplicas": 9,
                                             "metrics": [queue, queue]}}, source="q")
    assert p.replicas.min == 0
    assert [m.name for m in p.metrics] == ["queue_depth", "queue_depth.1"]  # '|' sanitized, repeat suffixed
    with pytest.raises(ConfigError, match="spec.minReplicas"):
        policy_from_manifest(base | {"spec": {"scaleTargetRef": ref, "minReplicas": 0, "maxReplicas": 9}},
                             source="q")


def test_default_policy_spells_out_hpa_defaults():
    """policies/hpa-default.yaml is HPA with nothing set: cpu 80 %, 1..10, default behavior, tolerance 0.1."""
    p = load_policy(ROOT / "policies" / "hpa-default.yaml")
    assert (p.algorithm, p.replicas.min, p.replicas.max, p.interval) == ("hpa", 1, 10, 15)
    assert [(m.name, m.kind, m.target, m.window.type) for m in p.metrics] == [("cpu", U, 80, "last")]
    assert p.behavior == Behavior()
    assert p.tolerance == Tolerance()
