"""One registry shape for every provider folder, and the shared by-kind parser."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import Field

from scaler.errors import ConfigError, Problem
from scaler.registry import ProviderConfig, by_kind, parse
from scaler.runbook.actions import REGISTRY as ACTIONS
from scaler.runbook.actions.base import Action, Inputs
from scaler.sources.base import SourceConfig
from scaler.sources.registry import SOURCES
from scaler.store.base import LeaseConfig, StoreConfig
from scaler.store.registry import LEASES, STORES
from scaler.targets.base import TargetConfig
from scaler.targets.registry import KINDS

REGISTRIES = {"sources": (SOURCES, SourceConfig), "targets": (KINDS, TargetConfig), "stores": (STORES, StoreConfig),
              "leases": (LEASES, LeaseConfig)}


@pytest.mark.parametrize("name", REGISTRIES)
def test_every_registry_maps_a_kind_to_a_strict_described_model_of_that_kind(name: str) -> None:
    registry, base = REGISTRIES[name]
    for kind, model in registry.items():
        assert issubclass(model, base), model.__name__
        assert model.model_fields["kind"].default == kind  # the key is the model's own kind
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
        assert [f for f, info in model.model_fields.items() if not info.description] == [], model.__name__
        assert "build" in vars(model), f"{model.__name__} does not say how to build its object"


def test_every_action_is_registered_under_its_own_name_with_a_strict_inputs_model() -> None:
    for name, action in ACTIONS.items():
        assert issubclass(action, Action) and action.name == name
        assert issubclass(action.inputs, Inputs) and action.inputs.model_config.get("extra") == "forbid"


class Small(ProviderConfig):
    kind: Literal["small"] = Field("small", description="A test provider")
    size: int = Field(ge=1, description="How many, a count")


class Large(ProviderConfig):
    kind: Literal["large"] = Field("large", description="Another test provider")
    size: int = Field(ge=100, description="How many, a count")
    name: str = Field(description="Display name")


TOY = {"small": Small, "large": Large}


@pytest.mark.parametrize(
    ("data", "where", "found"),
    [
        ({"kind": "large", "size": 5}, "policies[0].targets[1]",
         [("policies[0].targets[1].size", "Input should be greater than or equal to 100"),
          ("policies[0].targets[1].name", "Field required")]),
        ({"kind": "huge"}, "state", [("state.kind", "expected one of large, small, got 'huge'")]),
        ({"size": 1}, "state", [("state.kind", "expected one of large, small, got None")]),
        ({"kind": ["small"]}, "", [("kind", "expected one of large, small, got ['small']")]),
        (["small"], "lease", [("lease", "expected a mapping with a 'kind'")]),
        ({"kind": "small", "size": 1, "sise": 2}, "lease", [("lease.sise", "Extra inputs are not permitted")]),
    ],
    ids=["every-problem-under-its-path", "unknown-kind", "no-kind", "kind-not-text", "not-a-mapping", "typo"],
)
def test_by_kind_adds_every_problem_under_the_section_path(data: Any, where: str, found: list) -> None:
    problems: list[Problem] = [Problem("earlier", "kept")]
    assert by_kind(TOY, data, where=where, problems=problems) is None
    assert [(p.where, p.what) for p in problems] == [("earlier", "kept"), *found]


def test_by_kind_picks_the_model_by_kind_or_the_default() -> None:
    problems: list[Problem] = []
    assert by_kind(TOY, {"kind": "large", "size": 100, "name": "x"}, problems=problems) == Large(size=100, name="x")
    assert by_kind(TOY, {"size": 2}, problems=problems, default="small") == Small(size=2)
    assert problems == []


def test_parse_raises_one_config_error_naming_the_source() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(TOY, {"kind": "large"}, source="run.yaml")
    assert str(caught.value).startswith("run.yaml: invalid config (2 problems)")


def test_a_config_of_no_provider_cannot_build() -> None:
    with pytest.raises(NotImplementedError, match=r"ProviderConfig \(kind 'small'\) is not a registered provider"):
        ProviderConfig(kind="small").build(None)
