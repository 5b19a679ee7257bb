"""The scale-target interface every provider implements: read the replica counts, write a desired count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from scaler.aws import AwsClients
from scaler.kube import KubeSettings  # defined with the client it configures; runbook actions use it too
from scaler.registry import ProviderConfig

# Field descriptions several providers share.
KIND = "Which provider runs the replicas: one of the keys of scaler.targets.registry.KINDS"
REGION = "AWS region, e.g. us-east-1; omitted: the controller's default region (AwsSettings.region)"


@dataclass(frozen=True)
class Replicas:
    """A target's counts as its provider reports them now (someone else may have changed them)."""

    desired: int  # what the provider is asked to run (ASG DesiredCapacity, ECS desiredCount, spec.replicas)
    ready: int  # serving now (ASG InService instances, ECS runningCount, status.readyReplicas)
    min: int | None = None  # the provider's own lower bound (ASG MinSize), None when it has none
    max: int | None = None  # the provider's own upper bound (ASG MaxSize)


class ScaleTarget(Protocol):
    """One thing that runs replicas. Errors are scaler.errors.TransientError (worth a retry: throttling,
    5xx, connection) or PermanentError (validation, access denied, not found), raised `from` the provider's
    own error; the caller owns retries (scaler.retry), so adapters never retry or sleep themselves."""

    @property
    def id(self) -> str:
        """Stable display name, e.g. 'aws-asg:us-east-1/web' or 'kubernetes:shop/deployment/web'."""

    def read(self) -> Replicas:
        """The counts now."""

    def write(self, replicas: int) -> None:
        """Ask for `replicas` (already within the policy's and the provider's bounds)."""


@dataclass(frozen=True)
class TargetContext:
    """What builders need besides the target's own config: shared clients and settings."""

    aws: AwsClients = field(default_factory=AwsClients)
    kube: KubeSettings = field(default_factory=KubeSettings)


class TargetConfig(ProviderConfig):
    """Base of every target kind's config (the fields after `label` in a policy entry's `targets`)."""

    def build(self, ctx: TargetContext) -> ScaleTarget:
        """The target, with the shared clients in `ctx`; no provider call is made."""
        return super().build(ctx)
