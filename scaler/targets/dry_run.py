"""A pretend target that only remembers its count: for trying a policy live without changing anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaler.errors import PermanentError
from scaler.targets.base import Replicas, TargetContext

if TYPE_CHECKING:
    from scaler.targets.registry import DryRunConfig


class DryRunTarget:
    """Every replica is ready the moment it is asked for; nothing outside this object is ever called."""

    def __init__(self, *, name: str, replicas: int = 1) -> None:
        self.name = name
        self.replicas = replicas

    @property
    def id(self) -> str:
        return f"dry-run:{self.name}"

    def read(self) -> Replicas:
        return Replicas(desired=self.replicas, ready=self.replicas)

    def write(self, replicas: int) -> None:
        if replicas < 0:
            raise PermanentError(f"{self.id}: cannot run {replicas} replicas", provider="dry-run", code="Invalid")
        self.replicas = replicas


def build(config: DryRunConfig, ctx: TargetContext) -> DryRunTarget:
    return DryRunTarget(name=config.name, replicas=config.replicas)
