"""Two controllers against one moto HTTP server, each with its own clients, as two pods would run: one
leads and saves the decision state, stops renewing, and the other takes over and carries on from that state."""

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse

from scaler.aws import AwsClients, AwsSettings
from scaler.decision import statecodec
from scaler.decision.decide import decide
from scaler.decision.params import params_of
from scaler.decision.state import initial_state
from scaler.policy.load import load_policy
from scaler.store.dynamodb import DynamoStore, ensure_table
from scaler.store.lease import DynamoLease
from tests.conftest import ROOT
from tests.support.moto_server import moto_server

pytestmark = pytest.mark.e2e  # every test here starts real servers

T0 = 1_700_000_000.0
TARGETS = [f"service-{i}" for i in range(12_000)]


@pytest.fixture(scope="module")
def server():
    with moto_server() as s:
        yield s


class Controller:
    """What the loop holds per process: its own AWS clients, its lease, the state store."""

    def __init__(self, url: str, name: str):
        self.aws = AwsClients(AwsSettings(region="us-east-1", endpoint_url=url))
        self.lease = DynamoLease("leases", "web", holder=name, ttl=15.0, clients=self.aws)
        self.store = DynamoStore("state", clients=self.aws)


def test_handover_between_two_controllers(server):
    server.reset()
    a, b = Controller(server.url, "pod-a"), Controller(server.url, "pod-b")
    assert ensure_table(a.aws, "leases", "lease_id") and ensure_table(a.aws, "state", "key")
    assert not ensure_table(b.aws, "leases", "lease_id")  # the second pod finds them

    policy = load_policy(ROOT / "tests" / "data" / "web-fixed.yaml")
    params = params_of(policy)
    rng = np.random.default_rng(2)
    n = len(TARGETS)
    current = rng.integers(3, 11, n).astype(float)
    state = initial_state(params, current, T0)

    # t+0..t+1m45s: a leads, ticks every 15 s and saves the state after each tick; b is refused each time.
    now = T0
    for _ in range(8):
        assert a.lease.acquire(now) and a.lease.held(now)
        assert not b.lease.acquire(now) and b.lease.leader == "pod-a"
        obs = rng.gamma(4.0, 0.25, (3, n)) * params.target[:, None]
        d = decide(params, state, obs, current=current, now=now)
        state, current = d.state.with_applied(now, current, d.desired), d.desired.astype(float)
        a.store.save("web", statecodec.encode(policy, state, TARGETS))
        now += 15.0
    blob = a.store.load("web")
    assert len(blob) > 350_000  # 12,000 targets of noisy history: saved in chunks

    # a hangs after its renewal at t+1m45s (now - 15): silent from t+1m57s, the lease free after t+2m.
    last = now - 15.0
    assert not a.lease.held(last + 12.0)
    assert not b.lease.acquire(last + 14.0)
    assert b.lease.acquire(last + 15.5) and b.lease.leader == "pod-b"

    # b loads a's state through its own clients and decides exactly as a would have.
    loaded, why = statecodec.decode(b.store.load("web"), policy, targets=TARGETS, current=current, now=now)
    assert why == ""
    obs = rng.gamma(4.0, 0.25, (3, n)) * params.target[:, None]
    mine = decide(params, loaded, obs, current=current, now=now)
    theirs = decide(params, state, obs, current=current, now=now)
    assert np.array_equal(mine.desired, theirs.desired) and np.array_equal(mine.reasons, theirs.reasons)

    # a comes back: refused, and it now knows b leads. b shuts down cleanly and a takes over at once.
    assert not a.lease.acquire(now) and a.lease.leader == "pod-b"
    b.lease.release()
    assert a.lease.acquire(now + 1.0) and a.lease.held(now + 1.0)


def test_throttled_renewal_over_http_returns_false_and_expires(server):
    server.reset()
    a, b = Controller(server.url, "pod-a"), Controller(server.url, "pod-b")
    ensure_table(a.aws, "leases", "lease_id")
    assert a.lease.acquire(T0)

    def throttle(**kwargs):
        return (AWSResponse("http://fault", 400, {}, None),
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                 "ResponseMetadata": {"HTTPStatusCode": 400}})

    a.aws.client("dynamodb").meta.events.register("before-call.dynamodb.UpdateItem", throttle)
    assert a.lease.acquire(T0 + 5.0) is False  # throttled: no exception
    assert a.lease.held(T0 + 11.9) and not a.lease.held(T0 + 12.0)
    assert b.lease.acquire(T0 + 15.5)  # b's clients were never throttled
