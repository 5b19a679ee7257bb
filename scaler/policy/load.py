"""Loading a policy file: scaler's own YAML, or a Kubernetes HorizontalPodAutoscaler manifest."""

from __future__ import annotations

from pathlib import Path

from scaler import yamlio
from scaler.policy.hpa_manifest import policy_from_manifest
from scaler.policy.model import Policy


def load_policy(path: str | Path) -> Policy:
    """A policy YAML, or a Kubernetes autoscaling/v2 HorizontalPodAutoscaler manifest, as a Policy."""
    data = yamlio.read_yaml(path)
    if isinstance(data, dict) and data.get("kind") == "HorizontalPodAutoscaler":
        return policy_from_manifest(data, source=path)
    return yamlio.validate(Policy, data, path)
