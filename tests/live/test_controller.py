"""The controller's lease keeper and readiness, with fakes of the loop's interfaces."""

from __future__ import annotations

from scaler.clock import FakeClock
from scaler.errors import PermanentError
from scaler.live.controller import LeaseKeeper, _ready
from scaler.live.loop import Group, Loop
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
