"""Shared test helpers: policies built from small dicts, and the repository's paths."""

from pathlib import Path

import pytest

from scaler.policy.model import Policy

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "traces"


def make_policy(**over) -> Policy:
    base = {
        "name": "p",
        "replicas": {"min": 1, "max": 20},
        "metrics": [{"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
                     "window": {"type": "last"}}],
        "behavior": {
            "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
            "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
        },
    }
    base.update(over)
    return Policy.model_validate(base)


@pytest.fixture
def policy_factory():
    return make_policy
