"""DynamoStore under moto (in process): small values in one item, large ones in chunks that a reader never
sees mixed, errors marked transient or permanent; ensure_table creates and waits."""

import os

import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from scaler.aws import AwsClients, AwsSettings
from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError
from scaler.store.dynamodb import CHUNK, DynamoStore, ensure_table
from tests.support.moto_server import use_test_credentials

TABLE = "scaler-state"


class Fail:
    """A before-call hook that answers `times` calls with an AWS error instead of sending them (INFRA §6)."""

    def __init__(self, times: int, code: str = "ThrottlingException", status: int = 400):
        self.times, self.code, self.status, self.calls = times, code, status, 0

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            return (AWSResponse("http://fault", self.status, {}, None),
                    {"Error": {"Code": self.code, "Message": "injected"},
                     "ResponseMetadata": {"HTTPStatusCode": self.status}})
        return None


@pytest.fixture
def aws():
    use_test_credentials()
    with mock_aws():
        yield AwsClients(AwsSettings(region="us-east-1"))


@pytest.fixture
def store(aws):
    ensure_table(aws, TABLE, "key")
    return DynamoStore(TABLE, clients=aws, clock=FakeClock(1_700_000_000.0))


def keys(aws) -> list[str]:
    """Every item's key, sorted (the head "web" before its chunks "web#..."). A scan page stops at 1 MB."""
    pages = aws.client("dynamodb").get_paginator("scan").paginate(
        TableName=TABLE, ProjectionExpression="#k", ExpressionAttributeNames={"#k": "key"})
    return sorted(i["key"]["S"] for page in pages for i in page["Items"])


def test_save_load_and_replace(store, aws):
    assert store.load("web") is None
    store.save("web", b"\x00first")
    store.save("web", b"second")
    store.save("empty", b"")
    assert store.load("web") == b"second"
    assert store.load("empty") == b""
    assert keys(aws) == ["empty", "web"]


def test_a_value_over_400kb_is_chunked_and_read_back(store, aws):
    big = os.urandom(2 * CHUNK + 12_345)  # 712 KB: no single item could hold it
    store.save("web", big)

    assert store.load("web") == big
    names = keys(aws)
    assert len(names) == 4 and names[0] == "web"  # the head + 3 chunks
    assert all(n.startswith("web#") for n in names[1:])


def test_replacing_a_chunked_value_removes_the_old_chunks(store, aws):
    store.save("web", os.urandom(CHUNK + 1))  # 2 chunks
    first = keys(aws)
    store.save("web", os.urandom(3 * CHUNK))  # 3 chunks, new generation
    assert len(keys(aws)) == 4 and not set(first[1:]) & set(keys(aws))

    store.save("web", b"small again")
    assert keys(aws) == ["web"]
    assert store.load("web") == b"small again"


def test_a_value_of_exactly_one_chunk_stays_in_one_item(store, aws):
    store.save("web", b"x" * CHUNK)
    assert keys(aws) == ["web"]
    assert store.load("web") == b"x" * CHUNK


def test_a_reader_that_races_a_writer_returns_the_newer_value(store, aws, monkeypatch):
    """The reader gets the head of value A; before it reads A's chunks a writer saves B (and deletes A's
    chunks). The reader finds a chunk gone, reads the head again, and returns B in full: never a mix."""
    a, b = os.urandom(CHUNK + 10), os.urandom(CHUNK + 20)
    store.save("web", a)
    writer = DynamoStore(TABLE, clients=aws)
    get, raced = store._get, []

    def get_then_race(key):
        item = get(key)
        if key == "web" and not raced:
            raced.append(key)
            writer.save("web", b)
        return item

    monkeypatch.setattr(store, "_get", get_then_race)
    assert store.load("web") == b


def test_writers_faster_than_the_reader_are_a_transient_error(store, aws, monkeypatch):
    store.save("web", os.urandom(CHUNK + 1))
    writer = DynamoStore(TABLE, clients=aws)
    get = store._get

    def get_then_race(key):
        item = get(key)
        if key == "web":
            writer.save("web", os.urandom(CHUNK + 1))  # after every head read
        return item

    monkeypatch.setattr(store, "_get", get_then_race)
    with pytest.raises(TransientError) as e:
        store.load("web")
    assert e.value.code == "ChunksChanged"


def test_a_lost_chunk_is_a_permanent_error(store, aws):
    store.save("web", os.urandom(CHUNK + 1))
    chunk = keys(aws)[1]
    aws.client("dynamodb").delete_item(TableName=TABLE, Key={"key": {"S": chunk}})
    with pytest.raises(PermanentError) as e:
        store.load("web")
    assert e.value.code == "ChunksDamaged"


@pytest.mark.parametrize(
    ("operation", "code", "status", "error"),
    [
        ("GetItem", "ThrottlingException", 400, TransientError),
        ("GetItem", "InternalServerError", 500, TransientError),
        ("PutItem", "ProvisionedThroughputExceededException", 400, TransientError),
        ("PutItem", "AccessDeniedException", 400, PermanentError),
    ],
    ids=["throttled-read", "server-error", "throughput-exceeded", "access-denied"],
)
def test_provider_errors_are_marked_transient_or_permanent(store, aws, operation, code, status, error):
    aws.client("dynamodb").meta.events.register(f"before-call.dynamodb.{operation}", Fail(1, code, status))
    with pytest.raises(error) as e:
        store.load("web") if operation == "GetItem" else store.save("web", b"x")
    assert e.value.code == code and isinstance(e.value.__cause__, Exception)


def test_a_missing_table_is_a_permanent_error(aws):
    with pytest.raises(PermanentError) as e:
        DynamoStore("no-such-table", clients=aws).load("web")
    assert e.value.code == "ResourceNotFoundException"


def test_ensure_table_creates_once(aws):
    assert ensure_table(aws, TABLE, "key") is True
    assert ensure_table(aws, TABLE, "key") is False
    table = aws.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]


def test_ensure_table_refuses_a_table_keyed_otherwise(aws):
    ensure_table(aws, TABLE, "lease_id")
    with pytest.raises(PermanentError) as e:
        ensure_table(aws, TABLE, "key")
    assert e.value.code == "KeySchemaMismatch"


class Creating:
    """DescribeTable answered with status CREATING for the first `times` calls, then passed to moto."""

    def __init__(self, times: int):
        self.times, self.calls = times, 0

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            return (AWSResponse("http://fake", 200, {}, None),
                    {"Table": {"TableStatus": "CREATING",
                               "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}]}})
        return None


def test_ensure_table_waits_for_active_on_the_injected_clock(aws):
    ensure_table(aws, TABLE, "key")
    clock = FakeClock(0.0)
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.DescribeTable", Creating(3))

    assert ensure_table(aws, TABLE, "key", clock=clock) is False
    assert clock.now() == 3.0  # three 1-second polls while CREATING, nothing really slept


def test_ensure_table_gives_up_after_its_timeout(aws):
    ensure_table(aws, TABLE, "key")
    clock = FakeClock(0.0)
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.DescribeTable", Creating(1000))

    with pytest.raises(TransientError) as e:
        ensure_table(aws, TABLE, "key", clock=clock, timeout=10.0)
    assert e.value.code == "NotActive" and clock.now() == 10.0
