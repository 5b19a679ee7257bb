"""Leader leases: SoloLease for one controller, DynamoLease for several sharing a DynamoDB table.

Only the holder writes to scale targets. A DynamoLease item is
  {lease_id (S, partition key), holder (S), expires_at (N, unix s), version (N)}
and taking or renewing it is one conditional update: it succeeds if nobody holds the lease, the holder's
time is up, or we are the holder. The holder must renew well before `ttl` runs out: the control loop calls
`acquire` at least every (ttl - margin) / 2 seconds (6 s for the default 15 s TTL, so one failed renewal is
survived), not only once per policy tick, and writes to targets only while `held(now)`.

Clock assumption: controllers' clocks are NTP-synced. `expires_at` is written from the holder's clock and
compared with a contender's; a leader stops counting itself as holder `margin` seconds (ttl / 5 by default,
3 s of 15 s) before its own `expires_at`, so a contender whose clock runs up to `margin` ahead still finds
the old leader already silent when it takes over.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from scaler.aws import AwsClients, classify, error_code
from scaler.errors import TransientError
from scaler.store.base import LeaseConfig, StoreContext
from scaler.units import PositiveSeconds, Seconds

log = logging.getLogger(__name__)


class SoloLeaseConfig(LeaseConfig):
    """No election: this controller always leads."""

    kind: Literal["solo"] = Field("solo", description="One controller, always the leader")

    def build(self, ctx: StoreContext) -> SoloLease:
        return SoloLease(ctx.holder)


class DynamoLeaseConfig(LeaseConfig):
    """Leader election through a conditional update of one DynamoDB item."""

    kind: Literal["dynamodb"] = Field("dynamodb", description="Leader election through a DynamoDB lease item")
    table: str = Field(min_length=3, max_length=255, description="DynamoDB table, partition key `lease_id` (S)")
    name: str = Field("scaler", min_length=1, description="Lease id: controllers sharing a name elect one leader")
    ttl: PositiveSeconds = Field(
        15.0,
        description="Seconds one acquire holds the lease; a crashed leader is replaced after at most this. "
        "The loop renews every (ttl - margin) / 2 seconds or more often",
    )
    margin: Seconds | None = Field(
        None,
        description="Seconds before the TTL ends that the leader stops writing, to absorb clock skew between "
        "controllers (default ttl / 5: 3 s of 15 s)",
    )
    region: str | None = Field(None, description="AWS region of the table (default: the controller's region)")

    @model_validator(mode="after")
    def _check(self) -> DynamoLeaseConfig:
        if self.margin is not None and self.margin >= self.ttl:
            raise ValueError(f"margin ({self.margin:g} s) must be below ttl ({self.ttl:g} s)")
        return self

    def build(self, ctx: StoreContext) -> DynamoLease:
        return DynamoLease(self.table, self.name, holder=ctx.holder, ttl=self.ttl, clients=ctx.aws,
                           region=self.region, margin=self.margin)


class SoloLease:
    """A single controller: always the holder, nothing to take or give up."""

    def __init__(self, holder: str = "solo") -> None:
        self._holder = holder

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def leader(self) -> str | None:
        return self._holder

    def acquire(self, now: float) -> bool:
        return True

    def held(self, now: float) -> bool:
        return True

    def release(self) -> None:
        pass


_NAMES = {"#id": "lease_id", "#h": "holder", "#e": "expires_at", "#v": "version"}


class DynamoLease:
    """One named lease in a DynamoDB table whose partition key is `lease_id` (S); see ensure_table.

    `acquire(now)` takes or renews the lease until now + ttl. Outcomes:
      - written: we hold it; `held` stays True until now + ttl - margin.
      - refused (ConditionalCheckFailed): another holder's lease is current; `leader` says who, `held`
        turns False at once.
      - transient failure (throttling, 5xx, connection): False without raising. `held` keeps counting from
        the last successful acquire, so a leader whose renewals keep failing falls silent on its own, before
        anyone else can take over, without the loop having to do anything.
      - permanent failure (no such table, access denied): PermanentError, and `held` turns False.
    `version` goes up by one with every successful acquire (renewals included), a monotonic token the
    writes of one leadership can be checked against.
    """

    def __init__(
        self,
        table: str,
        name: str,
        *,
        holder: str,
        ttl: float,
        clients: AwsClients,
        region: str | None = None,
        margin: float | None = None,
    ) -> None:
        """ttl: seconds a successful acquire holds the lease. margin: seconds before that the holder stops
        counting itself as holder (default ttl / 5); must be below ttl."""
        margin = ttl / 5 if margin is None else margin
        if not 0 <= margin < ttl:
            raise ValueError(f"margin {margin:g} s must be at least 0 and below ttl {ttl:g} s")
        self.table, self.name, self.ttl, self.margin = table, name, float(ttl), float(margin)
        self.clients, self.region = clients, region
        self._holder = holder
        self._since: float | None = None  # `now` of the last successful acquire; None = not holding
        self.leader: str | None = None  # the holder as last seen (us after a success), None = unknown / free
        self.version: int | None = None  # the item's version after our last successful acquire

    @property
    def holder(self) -> str:
        return self._holder

    def _db(self) -> Any:
        return self.clients.client("dynamodb", self.region)

    def acquire(self, now: float) -> bool:
        """Take the lease if free or expired, renew it if ours; True if we hold it until now + ttl."""
        try:
            answer = self._db().update_item(
                TableName=self.table,
                Key={"lease_id": {"S": self.name}},
                UpdateExpression="SET #h = :me, #e = :exp ADD #v :one",
                ConditionExpression="attribute_not_exists(#id) OR #e < :now OR #h = :me",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={
                    ":me": {"S": self._holder},
                    ":exp": {"N": str(float(now + self.ttl))},
                    ":now": {"N": str(float(now))},
                    ":one": {"N": "1"},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                self._since = None
                old = e.response.get("Item") or {}
                self.leader = old.get("holder", {}).get("S")
                return False
            return self._failed(classify(e, provider="dynamodb"), e)
        except BotoCoreError as e:
            return self._failed(classify(e, provider="dynamodb"), e)
        # The lease runs from `now` as read before the call, never from when the answer came back: a slow
        # answer shortens what we count as ours, never lengthens it.
        self._since = now
        self.leader = self._holder
        self.version = int(answer.get("Attributes", {}).get("version", {}).get("N", 0)) or None
        return True

    def _failed(self, error: Exception, cause: BaseException) -> bool:
        if isinstance(error, TransientError):
            # The write may or may not have landed. Either way `held` counts from the last acquire we know
            # succeeded, which ends no later than the lease in the table does.
            log.warning("lease %s: acquire failed, will retry: %s", self.name, error)
            return False
        self._since = None
        raise error from cause

    def held(self, now: float) -> bool:
        """True while now < (last successful acquire) + ttl - margin: 15 s TTL, 3 s margin, renewed at
        t=100 -> held until t=112 even if every renewal after that fails; the table frees it at t=115."""
        return self._since is not None and now < self._since + self.ttl - self.margin

    def release(self) -> None:
        """Delete the lease if it is still ours, so a follower takes over at once. Never raises: if the
        delete fails, the lease simply runs out after ttl."""
        self._since = None
        try:
            self._db().delete_item(
                TableName=self.table,
                Key={"lease_id": {"S": self.name}},
                ConditionExpression="#h = :me",
                ExpressionAttributeNames={"#h": "holder"},
                ExpressionAttributeValues={":me": {"S": self._holder}},
            )
            self.leader = None
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                log.info("lease %s: not released, %s no longer holds it", self.name, self._holder)
                return
            log.warning("lease %s: release failed (it expires by itself): %s", self.name,
                        classify(e, provider="dynamodb"))
        except BotoCoreError as e:
            log.warning("lease %s: release failed (it expires by itself): %s", self.name,
                        classify(e, provider="dynamodb"))
