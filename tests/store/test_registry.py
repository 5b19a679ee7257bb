"""Store and lease config: parsed by `kind`, strict, durations in any unit, each kind builds its backend."""

import pytest
from pydantic import ValidationError

from scaler.aws import AwsClients
from scaler.clock import FakeClock
from scaler.errors import ConfigError
from scaler.registry import parse
from scaler.store.base import LeaseConfig, StoreConfig, StoreContext
from scaler.store.dynamodb import DynamoStore
from scaler.store.lease import DynamoLease, SoloLease
from scaler.store.registry import LEASES, STORES
from scaler.store.sqlite import SqliteStore

CTX = StoreContext(aws=AwsClients(), clock=FakeClock(), holder="pod-a")


def stores(data):
    return parse(STORES, data, source="state")


def leases(data):
    return parse(LEASES, data, source="lease")


@pytest.mark.parametrize(
    ("data", "built"),
    [
        ({"kind": "sqlite", "path": "{tmp}/state.db"}, SqliteStore),
        ({"kind": "dynamodb", "table": "scaler-state", "region": "eu-west-1"}, DynamoStore),
    ],
    ids=["sqlite", "dynamodb"],
)
def test_each_store_kind_builds_its_store(tmp_path, data, built):
    data = {k: v.format(tmp=tmp_path) for k, v in data.items()}
    store = stores(data).build(CTX)
    assert isinstance(store, built)


@pytest.mark.parametrize(
    ("data", "ttl", "margin"),
    [
        ({"kind": "dynamodb", "table": "leases"}, 15.0, 3.0),
        ({"kind": "dynamodb", "table": "leases", "ttl": "1m"}, 60.0, 12.0),
        ({"kind": "dynamodb", "table": "leases", "ttl": 30, "margin": "500ms"}, 30.0, 0.5),
    ],
    ids=["defaults", "ttl-1m", "ttl-and-margin"],
)
def test_dynamodb_lease_durations(data, ttl, margin):
    built = leases(data).build(CTX)
    assert isinstance(built, DynamoLease)
    assert (built.name, built.holder, built.ttl, built.margin) == ("scaler", "pod-a", ttl, margin)


def test_solo_lease():
    built = leases({"kind": "solo"}).build(CTX)
    assert isinstance(built, SoloLease) and built.holder == "pod-a"


@pytest.mark.parametrize(
    ("read", "data", "where"),
    [
        (stores, {"kind": "postgres", "path": "x"}, "kind"),
        (stores, {"kind": "sqlite"}, "path"),
        (stores, {"kind": "sqlite", "path": "x", "paht": "y"}, "paht"),
        (stores, {"kind": "dynamodb", "table": "ab"}, "table"),
        (leases, {"kind": "dynamodb", "table": "leases", "ttl": 0}, "ttl"),
        (leases, {"kind": "dynamodb", "table": "leases", "ttl": "soon"}, "ttl"),
        (leases, {"kind": "dynamodb", "table": "leases", "ttl": "10s", "margin": "10s"}, "margin"),
        (leases, {"kind": "solo", "ttl": "10s"}, "ttl"),
    ],
    ids=["unknown-kind", "missing-path", "typo", "short-table-name", "zero-ttl", "unreadable-ttl",
         "margin-not-below-ttl", "solo-takes-no-ttl"],
)
def test_bad_config_names_the_field(read, data, where):
    with pytest.raises(ConfigError) as e:
        read(data)
    assert where in str(e.value)


def test_configs_are_frozen():
    config = stores({"kind": "sqlite", "path": "x"})
    with pytest.raises(ValidationError):
        config.path = "y"


def test_each_registry_lists_its_own_kinds_and_every_field_is_described():
    assert all(issubclass(model, StoreConfig) for model in STORES.values())
    assert all(issubclass(model, LeaseConfig) for model in LEASES.values())
    for kind, model in [*STORES.items(), *LEASES.items()]:
        assert model.model_fields["kind"].default == kind
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
        assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid"
