"""Leader leases with time moved by hand: who holds the lease, when a silent leader stops counting itself as
one, when a follower may take over, and what throttling and clean shutdown do."""

import pytest
from moto import mock_aws

from scaler.aws import AwsClients, AwsSettings
from scaler.errors import PermanentError
from scaler.store.dynamodb import ensure_table
from scaler.store.lease import DynamoLease, SoloLease
from tests.store.test_dynamodb import Fail
from tests.support.moto_server import use_test_credentials

TABLE = "scaler-leases"
TTL = 15.0  # margin ttl / 5 = 3 s: a leader counts itself holder until 12 s after its last acquire


@pytest.fixture
def aws():
    use_test_credentials()
    with mock_aws():
        clients = AwsClients(AwsSettings(region="us-east-1"))
        ensure_table(clients, TABLE, "lease_id")
        yield clients


def lease(aws, holder: str, **kw) -> DynamoLease:
    return DynamoLease(TABLE, "web", holder=holder, ttl=TTL, clients=aws, **kw)


def stored(aws) -> dict:
    item = aws.client("dynamodb").get_item(TableName=TABLE, Key={"lease_id": {"S": "web"}},
                                           ConsistentRead=True).get("Item")
    if item is None:
        return {}
    return {k: float(v["N"]) if "N" in v else v["S"] for k, v in item.items()}


def test_solo_lease_is_always_held():
    solo = SoloLease()
    assert solo.holder == "solo" and solo.leader == "solo"
    assert solo.acquire(0.0) and solo.held(1e12)
    solo.release()
    assert solo.held(1e12)


def test_handover_narrated(aws):
    a, b = lease(aws, "a"), lease(aws, "b")

    # t=100: a takes the free lease until 115; it counts itself holder until 112.
    assert a.acquire(100.0) and a.held(100.0) and a.leader == "a"
    assert stored(aws) == {"lease_id": "web", "holder": "a", "expires_at": 115.0, "version": 1.0}
    # t=101: b is refused and learns who leads.
    assert not b.acquire(101.0) and not b.held(101.0)
    assert b.leader == "a"
    # t=105: a renews, until 120 (held until 117); the version counts every successful acquire.
    assert a.acquire(105.0) and a.version == 2
    # a stops renewing (stuck, partitioned). It goes silent at 117, 3 s before the table frees the lease.
    assert a.held(116.9) and not a.held(117.0)
    # t=119, t=120: not expired yet for b (expiry is strictly after 120).
    assert not b.acquire(119.0) and not b.acquire(120.0)
    # t=120.5: b takes over.
    assert b.acquire(120.5) and b.held(120.5) and b.leader == "b"
    # t=121: a wakes up; its acquire fails and now it knows b leads.
    assert not a.acquire(121.0) and not a.held(121.0) and a.leader == "b"
    # t=125: b shuts down cleanly; a need not wait for 135.5.
    b.release()
    assert not b.held(125.0) and stored(aws) == {}
    assert a.acquire(125.0) and a.leader == "a"


def test_release_by_a_former_holder_leaves_the_new_holders_lease(aws):
    a, b = lease(aws, "a"), lease(aws, "b")
    assert a.acquire(100.0)
    assert b.acquire(200.0)  # a's lease ran out long ago

    a.release()  # a still thinks it might hold it: the conditional delete must not remove b's

    assert stored(aws)["holder"] == "b"
    assert not lease(aws, "c").acquire(201.0)


def test_throttled_renewals_return_false_and_the_leader_falls_silent_by_itself(aws):
    a, b = lease(aws, "a"), lease(aws, "b")
    assert a.acquire(100.0)  # held until 112
    throttle = Fail(1000)
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.UpdateItem", throttle)

    # t=105, t=110: renewals are throttled; no exception, and a keeps what its last success gave it.
    assert a.acquire(105.0) is False and a.held(105.0)
    assert a.acquire(110.0) is False and a.held(111.9)
    # t=112: silent without anyone telling it, while the table still names it until 115.
    assert not a.held(112.0)
    assert throttle.calls == 2 and stored(aws)["holder"] == "a"

    aws.client("dynamodb").meta.events.unregister("before-call.dynamodb.UpdateItem", throttle)
    assert b.acquire(115.5) and b.leader == "b"


def test_a_permanent_error_raises_and_drops_the_lease(aws):
    a = lease(aws, "a")
    assert a.acquire(100.0)
    denied = Fail(1, "AccessDeniedException")
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.UpdateItem", denied)

    with pytest.raises(PermanentError) as e:
        a.acquire(105.0)
    assert e.value.code == "AccessDeniedException"
    assert not a.held(105.0)


def test_a_missing_table_is_a_permanent_error(aws):
    with pytest.raises(PermanentError):
        DynamoLease("no-such-table", "web", holder="a", ttl=TTL, clients=aws).acquire(100.0)


def test_release_never_raises(aws):
    a = lease(aws, "a")
    assert a.acquire(100.0)
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.DeleteItem", Fail(1))
    a.release()  # throttled: logged; the lease runs out by itself
    assert not a.held(100.0) and stored(aws)["holder"] == "a"


@pytest.mark.parametrize(
    ("margin", "held_until"),
    [(None, 112.0), (0.0, 115.0), (5.0, 110.0)],
    ids=["default-ttl/5", "no-margin", "5s"],
)
def test_margin_sets_when_the_holder_goes_silent(aws, margin, held_until):
    a = lease(aws, "a", margin=margin)
    assert a.acquire(100.0)
    assert a.held(held_until - 0.01) and not a.held(held_until)


@pytest.mark.parametrize("margin", [15.0, -1.0], ids=["equal-to-ttl", "negative"])
def test_a_margin_outside_0_to_ttl_is_refused(aws, margin):
    with pytest.raises(ValueError, match="margin"):
        lease(aws, "a", margin=margin)
