"""The flat registry of scale-target kinds: each kind's config model and builder, and build() by kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scaler.errors import ConfigError, Problem
from scaler.targets import aws_asg, aws_ecs, dry_run, kubernetes
from scaler.targets.base import ScaleTarget, TargetContext
from scaler.yamlio import validate

_KIND = "Which provider runs the replicas: one of the keys of KINDS"
_REGION = "AWS region, e.g. us-east-1; omitted: the controller's default region (AwsSettings.region)"


class TargetConfig(BaseModel):
    """Base of every kind's config: unknown keys are errors, so a typo cannot be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description=_KIND)


# The kinds' models live here, not in their provider modules: those would need TargetConfig from this
# module, which imports them. Providers import their model only for type checking.


class DryRunConfig(TargetConfig):
    """A pretend target held in memory (see dry_run.py)."""

    kind: Literal["dry-run"] = Field("dry-run", description=_KIND)
    name: str = Field(min_length=1, description="Display name of the pretend target")
    replicas: int = Field(1, ge=0, description="Replicas the pretend target starts with, a count")


class AsgConfig(TargetConfig):
    """An EC2 Auto Scaling group (see aws_asg.py)."""

    kind: Literal["aws-asg"] = Field("aws-asg", description=_KIND)
    name: str = Field(min_length=1, description="EC2 Auto Scaling group name")
    region: str | None = Field(None, min_length=1, description=_REGION)


class EcsConfig(TargetConfig):
    """An ECS service (see aws_ecs.py)."""

    kind: Literal["aws-ecs"] = Field("aws-ecs", description=_KIND)
    cluster: str = Field(min_length=1, description="ECS cluster name or ARN")
    service: str = Field(min_length=1, description="ECS service name or ARN; replicas are its tasks")
    region: str | None = Field(None, min_length=1, description=_REGION)


class KubernetesConfig(TargetConfig):
    """A Deployment or StatefulSet (see kubernetes.py)."""

    kind: Literal["kubernetes"] = Field("kubernetes", description=_KIND)
    name: str = Field(min_length=1, description="Name of the Deployment or StatefulSet")
    namespace: str = Field("default", min_length=1, description="Namespace the workload lives in")
    resource: Literal["deployment", "statefulset"] = Field(
        "deployment", description="Workload type; replicas are its pods, scaled through /scale"
    )


@dataclass(frozen=True)
class Kind:
    """One provider: the pydantic model of its fields and the function that builds a target from them."""

    config: type[TargetConfig]
    build: Callable[[Any, TargetContext], ScaleTarget]


KINDS: dict[str, Kind] = {
    "dry-run": Kind(DryRunConfig, dry_run.build),
    "aws-asg": Kind(AsgConfig, aws_asg.build),
    "aws-ecs": Kind(EcsConfig, aws_ecs.build),
    "kubernetes": Kind(KubernetesConfig, kubernetes.build),
}


def parse(data: object, *, source: str) -> TargetConfig:
    """One target's config from parsed YAML/JSON, picking the model by `kind`; ConfigError lists every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, "expected a mapping with a 'kind'")
    name = data.get("kind")
    if not isinstance(name, str) or name not in KINDS:
        known = ", ".join(KINDS)
        raise ConfigError(source, [Problem("kind", f"expected one of {known}, got {name!r}")])
    return validate(KINDS[name].config, data, source)


def build(config: TargetConfig, ctx: TargetContext) -> ScaleTarget:
    """The target `config` describes, built with the shared clients in `ctx` (no provider call is made)."""
    kind = KINDS.get(config.kind)
    if kind is None or not isinstance(config, kind.config):
        # Configs come from parse() or a kind's own model; anything else is a bug in the caller.
        raise TypeError(f"not a config of a registered kind: {type(config).__name__}(kind={config.kind!r})")
    return kind.build(config, ctx)
