"""A StateStore in a DynamoDB table (values over one item's limit split into chunks), and table setup.

Item layout, partition key `key` (S):
  small value:  {key, value (B), updated (N)}
  large value:  chunks {key: "<key>#<gen>#<i>", value (B), updated (N)} for i in 0..n-1, written first, then
                the head {key, gen (S), chunks (N), size (N), sha256 (S), updated (N)}
A DynamoDB item is at most 400 KB, so values above CHUNK bytes are split. Each save of a large value
writes its chunks under a new random generation `gen`, and only then the head that names it; chunks are
never overwritten, so a reader that follows a head finds that save's bytes and nothing else. The replaced
generation's chunks are deleted after the new head is in place (the put returns the old head).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from scaler.aws import AwsClients, classify, error_code
from scaler.clock import Clock, SystemClock
from scaler.errors import PermanentError, TransientError
from scaler.store.base import StoreConfig, StoreContext

log = logging.getLogger(__name__)

CHUNK = 350_000  # bytes of value per item: 400 KB item limit less the key, the other attributes and margin
KEY = "key"


def _call(db: Any, operation: str, **args: Any) -> dict[str, Any]:
    """db.operation(**args); botocore errors become TransientError / PermanentError (by code)."""
    try:
        return getattr(db, operation)(**args)
    except (ClientError, BotoCoreError) as e:
        raise classify(e, provider="dynamodb") from e


class DynamoStoreConfig(StoreConfig):
    """State in a DynamoDB table that several controllers share."""

    kind: Literal["dynamodb"] = Field("dynamodb", description="State in a DynamoDB table (shared by controllers)")
    table: str = Field(min_length=3, max_length=255, description="DynamoDB table, partition key `key` (S)")
    region: str | None = Field(None, description="AWS region of the table (default: the controller's region)")

    def build(self, ctx: StoreContext) -> DynamoStore:
        return DynamoStore(self.table, clients=ctx.aws, region=self.region, clock=ctx.clock)


class DynamoStore:
    """Values by key in one DynamoDB table whose partition key is `key` (S); see ensure_table.

    Reads are strongly consistent, so a load right after a save (by any controller) sees it.
    """

    def __init__(self, table: str, *, clients: AwsClients, region: str | None = None,
                 clock: Clock | None = None) -> None:
        self.table = table
        self.clients = clients
        self.region = region
        self.clock = clock or SystemClock()

    def _db(self, operation: str, **args: Any) -> dict[str, Any]:
        return _call(self.clients.client("dynamodb", self.region), operation, TableName=self.table, **args)

    def _get(self, key: str) -> dict[str, Any] | None:
        return self._db("get_item", Key={KEY: {"S": key}}, ConsistentRead=True).get("Item")

    def load(self, key: str) -> bytes | None:
        """The last saved value, None if never saved.

        A large value is read head first, then its chunks, and checked against the head's size and hash.
        If a chunk is gone or the bytes do not match, a writer replaced the value between the two reads
        (and deleted this generation's chunks): the head is read once more, which names the newer value.
        A second failure with the same head means the chunks were damaged (PermanentError); with yet
        another head, writers are saving faster than we can read (TransientError: retry later).
        """
        seen = None  # the generation whose chunks did not add up on the first read
        for _ in range(2):
            head = self._get(key)
            if head is None:
                return None
            if "value" in head:
                return bytes(head["value"]["B"])
            value = self._join(key, head)
            if value is not None:
                return value
            if seen is not None and head.get("gen") == seen:
                raise PermanentError(f"dynamodb {self.table}: {key!r} has missing or damaged chunks",
                                     provider="dynamodb", code="ChunksDamaged")
            seen = head.get("gen")
        raise TransientError(f"dynamodb {self.table}: {key!r} changed while being read twice",
                             provider="dynamodb", code="ChunksChanged")

    def _join(self, key: str, head: dict[str, Any]) -> bytes | None:
        """The value a chunked head names, None if a chunk is missing or the bytes do not match the head."""
        try:
            gen, count = head["gen"]["S"], int(head["chunks"]["N"])
            size, digest = int(head["size"]["N"]), head["sha256"]["S"]
        except (KeyError, ValueError) as e:
            raise PermanentError(f"dynamodb {self.table}: {key!r} has a malformed head item",
                                 provider="dynamodb", code="MalformedHead") from e
        parts = []
        for i in range(count):
            chunk = self._get(f"{key}#{gen}#{i}")
            if chunk is None or "value" not in chunk:
                return None
            parts.append(bytes(chunk["value"]["B"]))
        value = b"".join(parts)
        if len(value) != size or hashlib.sha256(value).hexdigest() != digest:
            return None
        return value

    def save(self, key: str, value: bytes) -> None:
        """Replace the value. Up to CHUNK bytes: one item put (atomic). Larger: chunks under a new
        generation, then the head (the put that makes the new value visible, atomically), then the old
        generation's chunks are deleted. A save that fails before the head leaves the old value in place
        (and unreferenced chunks, which nothing reads)."""
        now = {"N": str(float(self.clock.now()))}
        if len(value) <= CHUNK:
            head: dict[str, Any] = {KEY: {"S": key}, "value": {"B": value}, "updated": now}
        else:
            gen = uuid.uuid4().hex[:16]
            count = 0
            for count, start in enumerate(range(0, len(value), CHUNK), start=1):
                item = {KEY: {"S": f"{key}#{gen}#{count - 1}"}, "value": {"B": value[start:start + CHUNK]},
                        "updated": now}
                self._db("put_item", Item=item)
            head = {KEY: {"S": key}, "gen": {"S": gen}, "chunks": {"N": str(count)},
                    "size": {"N": str(len(value))}, "sha256": {"S": hashlib.sha256(value).hexdigest()},
                    "updated": now}
        old = self._db("put_item", Item=head, ReturnValues="ALL_OLD").get("Attributes") or {}
        if "gen" in old and old.get("gen") != head.get("gen"):
            self._drop(key, old)

    def _drop(self, key: str, old: dict[str, Any]) -> None:
        """Delete a replaced generation's chunks. The new value is already saved, so a failure here only
        leaves unreferenced items behind: logged, not raised."""
        try:
            gen, count = old["gen"]["S"], int(old["chunks"]["N"])
        except (KeyError, ValueError):
            log.warning("dynamodb %s: replaced head of %r is malformed; its chunks are left", self.table, key)
            return
        for i in range(count):
            try:
                self._db("delete_item", Key={KEY: {"S": f"{key}#{gen}#{i}"}})
            except (TransientError, PermanentError) as e:
                log.warning("dynamodb %s: could not delete old chunk %s#%s#%d: %s", self.table, key, gen, i, e)


def ensure_table(
    clients: AwsClients,
    table: str,
    key_name: str,
    region: str | None = None,
    *,
    clock: Clock | None = None,
    timeout: float = 120.0,
) -> bool:
    """Create `table` (PAY_PER_REQUEST, partition key `key_name` of type S) unless it exists, and wait until
    it is ACTIVE. True if this call created it. `timeout` seconds of waiting -> TransientError; a table of
    that name keyed on another attribute -> PermanentError. Two controllers may call it at once: the one
    whose create loses (ResourceInUseException) waits like the other."""
    clock = clock or SystemClock()
    db = clients.client("dynamodb", region)
    created = False
    try:
        found = db.describe_table(TableName=table)["Table"]
    except ClientError as e:
        if error_code(e) != "ResourceNotFoundException":
            raise classify(e, provider="dynamodb") from e
        try:
            found = db.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )["TableDescription"]
            created = True
        except ClientError as e2:
            if error_code(e2) != "ResourceInUseException":
                raise classify(e2, provider="dynamodb") from e2
            found = _call(db, "describe_table", TableName=table)["Table"]
    except BotoCoreError as e:
        raise classify(e, provider="dynamodb") from e
    keys = [(k["AttributeName"], k["KeyType"]) for k in found.get("KeySchema", [])]
    if keys != [(key_name, "HASH")]:
        raise PermanentError(f"dynamodb table {table} is keyed on {keys}, expected [({key_name!r}, 'HASH')]",
                             provider="dynamodb", code="KeySchemaMismatch")
    deadline = clock.now() + timeout
    while found.get("TableStatus") != "ACTIVE":
        if clock.now() >= deadline:
            raise TransientError(f"dynamodb table {table} not ACTIVE after {timeout:g} s "
                                 f"(status {found.get('TableStatus')})", provider="dynamodb", code="NotActive")
        clock.sleep(1.0)
        found = _call(db, "describe_table", TableName=table)["Table"]
    return created
