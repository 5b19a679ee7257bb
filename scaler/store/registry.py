"""The flat registries of state stores and leases, `kind -> config model`: a new backend is one module (its
config model, whose build(ctx) makes the store or lease, and the backend) plus one line here."""

from __future__ import annotations

from scaler.store.base import LeaseConfig, StoreConfig
from scaler.store.dynamodb import DynamoStoreConfig
from scaler.store.lease import DynamoLeaseConfig, SoloLeaseConfig
from scaler.store.sqlite import SqliteStoreConfig

STORES: dict[str, type[StoreConfig]] = {
    "sqlite": SqliteStoreConfig,
    "dynamodb": DynamoStoreConfig,
}

LEASES: dict[str, type[LeaseConfig]] = {
    "solo": SoloLeaseConfig,
    "dynamodb": DynamoLeaseConfig,
}
