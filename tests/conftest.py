"""Shared test helpers: policies built from small dicts, the repository's paths, a private home directory,
and the `e2e` marker for every test that starts a real server."""

import os
import tempfile
from pathlib import Path

import pytest

from scaler.policy.model import Policy

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "traces"

# No test writes into the real home directory (a runbook journal defaults to ~/.local/state/scaler): the
# whole session, and every process it starts, gets a home of its own.
_HOME = Path(tempfile.mkdtemp(prefix="scaler-test-home-"))
for _var, _sub in (("HOME", ""), ("XDG_STATE_HOME", ".local/state"), ("XDG_CONFIG_HOME", ".config"),
                   ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share")):
    os.environ[_var] = str(_HOME / _sub)
os.environ.pop("SCALER_STATE_DIR", None)

# Fixtures that start a real server (Prometheus, Alertmanager, the moto server): a test that uses one is
# an end-to-end test. Tests that start servers without these fixtures carry the marker themselves.
SERVER_FIXTURES = frozenset({"prometheus", "prom", "guarded", "tls", "alertmanager", "moto_server", "moto",
                             "moto_session"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


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
