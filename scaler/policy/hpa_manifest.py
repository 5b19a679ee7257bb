"""Kubernetes autoscaling/v2 HorizontalPodAutoscaler manifests read as policies (algorithm: hpa), every problem
named by its manifest field path."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import ValidationError

from scaler.errors import ConfigError, Problem
from scaler.policy.model import MetricKind, Policy, default_scale_down, default_scale_up
from scaler.yamlio import problems_from

_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<dec>[numkMGTPE]))?$"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: object) -> float:
    """A Kubernetes quantity as a float: '500m' -> 0.5, '1k' -> 1000, '2Gi' -> 2147483648, '1e3' -> 1000."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a quantity such as 500m, 2, 1k or 2Gi")
    if not isinstance(value, str):
        return float(value)
    m = _QUANTITY.match(value.strip())
    if not m:
        raise ValueError(f"cannot read {value!r} as a quantity (e.g. 500m, 2, 1k, 2Gi)")
    try:
        num = Decimal(m["num"])
    except InvalidOperation:
        raise ValueError(f"cannot read {value!r} as a quantity") from None
    if m["bin"]:
        return float(num * (2 ** _BINARY[m["bin"]]))
    if m["exp"]:
        return float(num.scaleb(int(m["exp"][1:])))
    return float(num.scaleb(_DECIMAL[m["dec"]]) if m["dec"] else num)


class _Walk:
    """Reads a manifest, collecting every problem with its field path instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def bad(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))

    def mapping(self, node: dict, key: str, path: str, *, required: bool = False, known=()) -> dict | None:
        """node[key] as a mapping (None if absent or not a mapping), flagging keys outside `known`."""
        where = f"{path}.{key}" if path else key
        value = node.get(key)
        if value is None:
            if required:
                self.bad(where, "required")
            return None
        if not isinstance(value, dict):
            self.bad(where, "expected a mapping")
            return None
        for extra in sorted(set(value) - set(known)) if known else ():
            self.bad(f"{where}.{extra}", "unknown field")
        return value

    def string(self, node: dict, key: str, path: str) -> str | None:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            self.bad(f"{path}.{key}", "required" if value is None else "expected a non-empty string")
            return None
        return value

    def integer(self, node: dict, key: str, path: str, *, default=None, lo=None, hi=None) -> int | None:
        value = default if node.get(key) is None else node[key]
        if value is None:
            self.bad(f"{path}.{key}", "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(f"{path}.{key}", f"expected a whole number, got {value!r}")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.bad(f"{path}.{key}", f"must be {span}, got {value}")
            return None
        return value

    def choice(self, node: dict, key: str, path: str, options: Sequence[str], default=None) -> str | None:
        value = default if node.get(key) is None else node[key]
        if value not in options:
            what = "required" if value is None else f"expected one of {', '.join(options)}, got {value!r}"
            self.bad(f"{path}.{key}", what)
            return None
        return value

    def quantity(self, node: dict, key: str, path: str, *, default=None, positive=True) -> float | None:
        raw = default if node.get(key) is None else node[key]
        if raw is None:
            self.bad(f"{path}.{key}", "required")
            return None
        try:
            value = parse_quantity(raw)
        except ValueError as e:
            self.bad(f"{path}.{key}", str(e))
            return None
        if value < 0 or (positive and value == 0):
            self.bad(f"{path}.{key}", f"must be {'positive' if positive else 'at least 0'}, got {raw!r}")
            return None
        return value


_SOURCES = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
            "Object": "object", "External": "external"}
_TARGET_FIELDS = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}
_DEFAULT_METRIC = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                            "averageUtilization": 80}}}


def _target(w: _Walk, src: dict, path: str, allowed: Sequence[str]) -> tuple[str | None, float | None]:
    node = w.mapping(src, "target", path, required=True, known=("type", *_TARGET_FIELDS.values()))
    if node is None:
        return None, None
    where = f"{path}.target"
    kind = w.choice(node, "type", where, allowed)
    if kind is None:
        return None, None
    if kind == "Utilization":
        value = w.integer(node, "averageUtilization", where, lo=1)
        return kind, None if value is None else float(value)
    return kind, w.quantity(node, _TARGET_FIELDS[kind], where)


def _metric(w: _Walk, spec: dict, path: str) -> tuple[str | None, MetricKind, float | None, bool]:
    """(name, kind, target, whole percent) of one spec.metrics entry. Resource/Pods and Value targets use the
    ratio rule (utilization); Object/External AverageValue targets are per-replica shares of a total
    (gauge). Only a Resource Utilization target is read as a whole percent (GetResourceUtilizationRatio
    truncates it); the others are compared in milli-units."""
    for extra in sorted(set(spec) - {"type", *_SOURCES.values()}):
        w.bad(f"{path}.{extra}", "unknown field")
    typ = w.choice(spec, "type", path, list(_SOURCES))
    if typ is None:
        return None, MetricKind.utilization, None, False
    key = _SOURCES[typ]
    where = f"{path}.{key}"
    if typ in ("Resource", "ContainerResource"):
        known = ("name", "target", "container") if typ == "ContainerResource" else ("name", "target")
        src = w.mapping(spec, key, path, required=True, known=known)
        if src is None:
            return None, MetricKind.utilization, None, False
        name = w.string(src, "name", where)
        if typ == "ContainerResource":
            container = w.string(src, "container", where)
            name = f"{container}.{name}" if container and name else None
        kind, target = _target(w, src, where, ("Utilization", "AverageValue"))
        return name, MetricKind.utilization, target, kind == "Utilization"
    known = ("describedObject", "metric", "target") if typ == "Object" else ("metric", "target")
    src = w.mapping(spec, key, path, required=True, known=known)
    if src is None:
        return None, MetricKind.utilization, None, False
    if typ == "Object":
        obj = w.mapping(src, "describedObject", where, required=True, known=("apiVersion", "kind", "name"))
        if obj is not None:
            w.string(obj, "kind", f"{where}.describedObject")
            w.string(obj, "name", f"{where}.describedObject")
    metric = w.mapping(src, "metric", where, required=True, known=("name", "selector"))
    name = None if metric is None else w.string(metric, "name", f"{where}.metric")
    allowed = ("AverageValue",) if typ == "Pods" else ("Value", "AverageValue")
    kind, target = _target(w, src, where, allowed)
    gauge = typ in ("Object", "External") and kind == "AverageValue"
    return name, MetricKind.gauge if gauge else MetricKind.utilization, target, False


def _metric_name(raw: str, taken: set[str], index: int) -> str:
    # Policy names allow [A-Za-z0-9_.-] starting with a letter or _; external metric names may hold '|' or
    # '/', and one name may repeat with different selectors: "qps" twice -> "qps", "qps.1".
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw)[:120]
    if not re.match(r"[A-Za-z_]", name):
        name = f"m_{name}"
    return f"{name}.{index}" if name in taken else name


def _rules(w: _Walk, behavior: dict, key: str, path: str, default) -> tuple[dict, float]:
    """One behavior direction with HPA's defaults for anything left out, and its tolerance (default 0.1)."""
    node = w.mapping(behavior, key, path, known=("stabilizationWindowSeconds", "selectPolicy", "policies",
                                                 "tolerance")) or {}
    where = f"{path}.{key}"
    window = w.integer(node, "stabilizationWindowSeconds", where, default=int(default.stabilization),
                       lo=0, hi=3600)
    select = w.choice(node, "selectPolicy", where, ("Max", "Min", "Disabled"), default="Max")
    policies = [p.model_dump() for p in default.policies]
    if node.get("policies") is not None:
        items = node["policies"]
        if not isinstance(items, list) or not items:
            w.bad(f"{where}.policies", "must list at least one policy")
            items = []
        policies = []
        for i, p in enumerate(items):
            ppath = f"{where}.policies[{i}]"
            if not isinstance(p, dict):
                w.bad(ppath, "expected a mapping")
                continue
            for extra in sorted(set(p) - {"type", "value", "periodSeconds"}):
                w.bad(f"{ppath}.{extra}", "unknown field")
            typ = w.choice(p, "type", ppath, ("Pods", "Percent"))
            value = w.integer(p, "value", ppath, lo=1)
            period = w.integer(p, "periodSeconds", ppath, lo=1, hi=1800)
            if typ and value and period:
                policies.append({"type": typ.lower(), "value": value, "period": period})
    tolerance = w.quantity(node, "tolerance", where, default=0.1, positive=False)
    rules = {"stabilization": window, "policies": policies, "select": (select or "Max").lower()}
    return rules, 0.1 if tolerance is None else tolerance


def _where(loc: str) -> str:
    """A Policy field path back in manifest terms, for the rare problem only the Policy model catches."""
    for ours, theirs in (("replicas.min", "spec.minReplicas"), ("replicas.max", "spec.maxReplicas"),
                         ("metrics", "spec.metrics"), ("behavior.scale_up", "spec.behavior.scaleUp"),
                         ("behavior.scale_down", "spec.behavior.scaleDown"), ("name", "metadata.name")):
        if loc == ours or loc.startswith((f"{ours}.", f"{ours}[")):
            return theirs + loc[len(ours):]
    return loc or "spec"


def policy_from_manifest(data: object, source: str | Path) -> Policy:
    """An autoscaling/v2 HorizontalPodAutoscaler as a Policy with algorithm "hpa".

    Defaults are HPA's: minReplicas 1, metrics [cpu Utilization 80], and for a `behavior` that leaves a
    direction or field out, scaleUp {0 s, Max, 4 pods or 100 % per 15 s}, scaleDown {300 s, Max, 100 %
    per 15 s}, tolerance 0.1. No `behavior` at all keeps Policy.behavior None: HPA's legacy path. Every
    problem is reported at once, by manifest field path, as one ConfigError.
    """
    if not isinstance(data, dict):
        raise ConfigError(source, "expected a HorizontalPodAutoscaler mapping at the top level")
    w = _Walk()
    if data.get("apiVersion") not in ("autoscaling/v2", "autoscaling/v2beta2"):
        w.bad("apiVersion", f"expected autoscaling/v2, got {data.get('apiVersion')!r}")
    if data.get("kind") != "HorizontalPodAutoscaler":
        w.bad("kind", f"expected HorizontalPodAutoscaler, got {data.get('kind')!r}")
    meta = w.mapping(data, "metadata", "", required=True) or {}
    hpa_name = w.string(meta, "name", "metadata") if isinstance(data.get("metadata"), dict) else None
    spec = w.mapping(data, "spec", "", required=True,
                     known=("scaleTargetRef", "minReplicas", "maxReplicas", "metrics", "behavior")) or {}

    ref = w.mapping(spec, "scaleTargetRef", "spec", required=True, known=("apiVersion", "kind", "name"))
    ref_kind = ref_name = None
    if ref is not None:
        ref_kind = w.string(ref, "kind", "spec.scaleTargetRef")
        ref_name = w.string(ref, "name", "spec.scaleTargetRef")

    raw_metrics = spec.get("metrics") or [_DEFAULT_METRIC]
    if not isinstance(raw_metrics, list):
        w.bad("spec.metrics", "expected a list")
        raw_metrics = []
    metrics, taken = [], set()
    for i, m in enumerate(raw_metrics):
        if not isinstance(m, dict):
            w.bad(f"spec.metrics[{i}]", "expected a mapping")
            continue
        name, kind, target, whole = _metric(w, m, f"spec.metrics[{i}]")
        if name is not None and target is not None:
            name = _metric_name(name, taken, i)
            taken.add(name)
            # HPA acts on the latest sample it reads; no smoothing of its own.
            metrics.append({"name": name, "kind": kind.value, "target": target, "window": {"type": "last"},
                            **({"whole_percent": False} if kind == MetricKind.utilization and not whole else {})})
    external = any(isinstance(m, dict) and m.get("type") in ("Object", "External") for m in raw_metrics)

    # minReplicas 0 is HPAScaleToZero, which needs an Object or External metric to wake from zero.
    low = w.integer(spec, "minReplicas", "spec", default=1, lo=0 if external else 1)
    high = w.integer(spec, "maxReplicas", "spec", lo=1)
    if low is not None and high is not None and high < low:
        w.bad("spec.maxReplicas", f"must be at least minReplicas ({low}), got {high}")

    behavior, tolerance = None, {"up": 0.1, "down": 0.1}
    if spec.get("behavior") is not None:
        node = w.mapping(spec, "behavior", "spec", known=("scaleUp", "scaleDown")) or {}
        up, tolerance["up"] = _rules(w, node, "scaleUp", "spec.behavior", default_scale_up())
        down, down_tol = _rules(w, node, "scaleDown", "spec.behavior", default_scale_down())
        # Below 1 - 1 = 0 no ratio can fall, so a scale-down tolerance above 1 acts exactly like 1.
        tolerance["down"] = min(down_tol, 1.0)
        behavior = {"scale_up": up, "scale_down": down}

    if w.problems:
        raise ConfigError(source, w.problems)
    namespace = meta.get("namespace")
    name = hpa_name if re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", hpa_name or "") else f"hpa-{hpa_name}"
    target = {"kind": "kubernetes", "name": ref_name, "ref_kind": ref_kind,
              "api_version": (ref or {}).get("apiVersion"), "namespace": namespace}
    doc = {
        "name": name[:128],
        "description": f"Imported from HorizontalPodAutoscaler {namespace or 'default'}/{hpa_name}",
        "target": {k: v for k, v in target.items() if v is not None},
        "algorithm": "hpa",
        "replicas": {"min": low, "max": high},
        "interval": 15.0,  # --horizontal-pod-autoscaler-sync-period default
        "metrics": metrics,
        "behavior": behavior,
        "tolerance": tolerance,
    }
    try:
        return Policy.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(source, [Problem(_where(p.where), p.what) for p in problems_from(e)]) from None
