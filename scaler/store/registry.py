"""Config models for state stores and leases, and their flat registries (a new backend: a model, two lines)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scaler.aws import AwsClients
from scaler.clock import Clock, SystemClock
from scaler.store.base import Lease, StateStore
from scaler.store.dynamodb import DynamoStore
from scaler.store.lease import DynamoLease, SoloLease
from scaler.store.sqlite import SqliteStore
from scaler.units import PositiveSeconds, Seconds


def default_holder() -> str:
    """host-pid-random: unique per process, and readable in the lease table ('web-7f9c-12-a3f1c2')."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class StoreContext:
    """What builders need besides their own config: shared AWS clients, the clock, this process's name."""

    aws: AwsClients = field(default_factory=AwsClients)
    clock: Clock = field(default_factory=SystemClock)
    holder: str = field(default_factory=default_holder)


class _Config(BaseModel):
    """Unknown keys are errors: a typo in the controller config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SqliteStoreConfig(_Config):
    kind: Literal["sqlite"] = Field("sqlite", description="State in one SQLite file (a single controller)")
    path: Path = Field(description="SQLite file for the state (created with its directories if missing)")

    def build(self, ctx: StoreContext) -> StateStore:
        return SqliteStore(self.path, clock=ctx.clock)


class DynamoStoreConfig(_Config):
    kind: Literal["dynamodb"] = Field("dynamodb", description="State in a DynamoDB table (shared by controllers)")
    table: str = Field(min_length=3, max_length=255, description="DynamoDB table, partition key `key` (S)")
    region: str | None = Field(None, description="AWS region of the table (default: the controller's region)")

    def build(self, ctx: StoreContext) -> StateStore:
        return DynamoStore(self.table, clients=ctx.aws, region=self.region, clock=ctx.clock)


class SoloLeaseConfig(_Config):
    kind: Literal["solo"] = Field("solo", description="One controller, always the leader")

    def build(self, ctx: StoreContext) -> Lease:
        return SoloLease(ctx.holder)


class DynamoLeaseConfig(_Config):
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

    def build(self, ctx: StoreContext) -> Lease:
        return DynamoLease(self.table, self.name, holder=ctx.holder, ttl=self.ttl, clients=ctx.aws,
                           region=self.region, margin=self.margin)


STORES: dict[str, type[SqliteStoreConfig | DynamoStoreConfig]] = {
    "sqlite": SqliteStoreConfig,
    "dynamodb": DynamoStoreConfig,
}

LEASES: dict[str, type[SoloLeaseConfig | DynamoLeaseConfig]] = {
    "solo": SoloLeaseConfig,
    "dynamodb": DynamoLeaseConfig,
}

# For the controller config: `store: {kind: sqlite, path: ...}` picks the model by `kind`.
StoreConfig = Annotated[SqliteStoreConfig | DynamoStoreConfig, Field(discriminator="kind")]
LeaseConfig = Annotated[SoloLeaseConfig | DynamoLeaseConfig, Field(discriminator="kind")]
