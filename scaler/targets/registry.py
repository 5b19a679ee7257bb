"""The flat registry of scale-target kinds, `kind -> config model`: a new provider is one module (its config
model, whose build(ctx) makes the target, and the target) plus one line here."""

from __future__ import annotations

from scaler.targets.aws_asg import AsgConfig
from scaler.targets.aws_ecs import EcsConfig
from scaler.targets.base import TargetConfig
from scaler.targets.dry_run import DryRunConfig
from scaler.targets.kubernetes import KubernetesConfig

KINDS: dict[str, type[TargetConfig]] = {
    "dry-run": DryRunConfig,
    "aws-asg": AsgConfig,
    "aws-ecs": EcsConfig,
    "kubernetes": KubernetesConfig,
}
