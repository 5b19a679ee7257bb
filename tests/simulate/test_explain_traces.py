"""`--explain` tells each decision with the numbers it used: on every shared trace, for the shipped web policy
and its HPA baseline, every explained line's arithmetic gives the ask it prints, the highest ask is the
highest printed, and the line ends on the count decided."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import simulate
from scaler.simulate.report import explanations
from scaler.simulate.world import World, busy_scale
from tests.conftest import ROOT, SHARED_TRACES

# Count traces (requests, passengers, bytes, tweets) are total demand; the rest are CPU %.
COUNTS = ("Twitter_volume_", "elb_request_count", "nyc_taxi", "ec2_network_in", "nasa_http_rps", "twitter_stream_rps")
REFUSED = {"ec2_network_in_5abac7"}  # a repeated timestamp: refused by the loader (tests/recordings)
TRACES = [p for p in sorted(SHARED_TRACES.glob("*.csv")) if p.stem not in REFUSED]

ASK = re.compile(r"ceil\(([^=]*?)\) = ceil\(([^)]*)\) = (-?\d+)")
KEPT = re.compile(r"within the tolerance: keeps (\d+)")
ARITHMETIC = re.compile(r"^[0-9.e+\- x/(),min]+$")


def evaluate(expr: str) -> float:
    """'10 x 54.1 / 70', '4 x min(2.5 / 0.5, 2)', '900 / 100' as a number."""
    expr = expr.replace(" (unready replicas counted at 0 %)", "")
    assert ARITHMETIC.match(expr), expr
    return float(eval(expr.replace(" x ", " * "), {"__builtins__": {}}, {"min": min}))  # noqa: S307


def check(line: str, current: float, desired: float) -> None:
    head = re.match(r"(?:(\d+) -> (\d+)|hold (\d+)) ", line)
    assert head, line
    if head.group(3) is not None:
        assert float(head.group(3)) == current == desired, line
    else:
        assert (float(head.group(1)), float(head.group(2))) == (current, desired), line
    asks = []
    for expr, product, ask in ASK.findall(line):
        # The product's ceiling is the ask; the factors give the product up to their printed digits.
        assert math.ceil(float(product)) == int(ask), line
        assert evaluate(expr) == pytest.approx(float(product), rel=1e-3, abs=1e-3), line
        asks.append(int(ask))
    asks += [int(k) for k in KEPT.findall(line)]
    highest = re.search(r"highest ask (-?\d+)", line)
    if highest:
        assert int(highest.group(1)) == max(asks), line
    assert line.rsplit(" -> ", 1)[-1] == f"{desired:g}", line


@pytest.mark.parametrize("trace", TRACES, ids=[p.stem for p in TRACES])
def test_every_explained_action_adds_up_to_the_count_decided(trace):
    rec = load_recording(trace, metric="load" if "value" in trace.read_text()[:40] else None)
    (values,) = rec.metrics.values()
    world = World(**busy_scale(values, count=trace.stem.startswith(COUNTS)))
    web = load_policy(ROOT / "policies" / "web.yaml")
    for policy in (web, hpa_baseline(web)):
        result = simulate(policy, rec, world, detail=True)
        tl = result.timeline
        when = {t: k for k, t in enumerate(result.times)}
        lines = 0
        for _, at, line in explanations(result):
            k = when[at]
            check(line, float(tl.replicas[k, 0]), float(tl.desired[k, 0]))
            lines += 1
        # one line per scale action, and the policy did act
        assert lines == int(np.sum(tl.desired != tl.replicas)) > 0
