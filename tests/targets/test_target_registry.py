"""The target registry: every kind builds from its config, configs refuse unknown fields, no eager imports."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pydantic
import pytest

from scaler.errors import ConfigError
from scaler.registry import parse
from scaler.targets.base import KubeSettings, Replicas, TargetConfig, TargetContext
from scaler.targets.dry_run import DryRunConfig
from scaler.targets.registry import KINDS
from tests.conftest import ROOT
from tests.support.fake_kube import FakeKube

# One valid config per kind, with the id its target gets (AWS region: the context's default, us-east-1).
EXAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "dry-run": ({"kind": "dry-run", "name": "web", "replicas": 3}, "dry-run:web"),
    "aws-asg": ({"kind": "aws-asg", "name": "web"}, "aws-asg:us-east-1/web"),
    "aws-ecs": ({"kind": "aws-ecs", "cluster": "shop", "service": "web", "region": "eu-west-1"},
                "aws-ecs:eu-west-1/shop/web"),
    "kubernetes": ({"kind": "kubernetes", "name": "db", "namespace": "shop", "resource": "statefulset"},
                   "kubernetes:shop/statefulset/db"),
}


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_from_its_config_without_calling_anything(kind: str, kube: FakeKube) -> None:
    data, expected_id = EXAMPLES[kind]
    ctx = TargetContext(kube=KubeSettings(kubeconfig=kube.kubeconfig, in_cluster=False))

    config = parse(KINDS, data, source="example.yaml")
    target = config.build(ctx)

    assert type(config) is KINDS[kind]
    assert target.id == expected_id
    assert callable(target.read) and callable(target.write)
    assert kube.requests == []  # building connects to nothing


@pytest.mark.parametrize("kind", KINDS)
def test_every_config_refuses_unknown_fields(kind: str) -> None:
    data = {**EXAMPLES[kind][0], "replcias": 3}

    with pytest.raises(pydantic.ValidationError) as caught:
        KINDS[kind].model_validate(data)
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]

    with pytest.raises(ConfigError, match=r"replcias: Extra inputs are not permitted"):
        parse(KINDS, data, source="targets.yaml")


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_is_described(kind: str) -> None:
    model = KINDS[kind]
    assert issubclass(model, TargetConfig) and model.model_fields["kind"].default == kind
    assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid"
    assert [f for f, info in model.model_fields.items() if not info.description] == []


def test_parse_names_the_source_and_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(KINDS, {"kind": "aws-ecs", "service": "", "region": 7}, source="targets.yaml")
    text = str(caught.value)
    assert text.startswith("targets.yaml: invalid config (3 problems)")
    for field in ("cluster", "service", "region"):
        assert f"  - {field}: " in text


@pytest.mark.parametrize(
    "data",
    [{"kind": "nomad", "name": "web"}, {"name": "web"}, {"kind": ["dry-run"]}, ["dry-run"]],
    ids=["unknown-kind", "no-kind", "kind-not-a-string", "not-a-mapping"],
)
def test_parse_refuses_configs_of_no_known_kind(data: Any) -> None:
    with pytest.raises(ConfigError, match="targets.yaml: invalid config"):
        parse(KINDS, data, source="targets.yaml")


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"kind: expected one of aws-asg, aws-ecs, dry-run, kubernetes, got 'nomad'"):
        parse(KINDS, {"kind": "nomad"}, source="targets.yaml")


def test_configs_are_frozen() -> None:
    config = DryRunConfig(name="web")
    with pytest.raises(pydantic.ValidationError):
        config.replicas = 5  # type: ignore[misc]


def test_only_a_registered_kind_builds() -> None:
    with pytest.raises(NotImplementedError, match="not a registered provider"):
        TargetConfig(kind="aws-asg").build(TargetContext())


def test_importing_the_registry_does_not_import_the_kubernetes_client() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import scaler.targets.registry, sys; print('kubernetes' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.strip() == "False"


def test_dry_run_counts_in_memory() -> None:
    target = DryRunConfig(name="web", replicas=2).build(TargetContext())
    assert target.read() == Replicas(desired=2, ready=2)

    target.write(7)

    assert target.read() == Replicas(desired=7, ready=7)
    assert DryRunConfig(name="web").build(TargetContext()).read().desired == 1  # a new one starts afresh
