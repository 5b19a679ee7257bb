"""A pretend target that only remembers its count: for trying a policy live without changing anything."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scaler.errors import PermanentError
from scaler.targets.base import KIND, Replicas, TargetConfig, TargetContext


class DryRunConfig(TargetConfig):
    """A pretend target held in memory."""

    kind: Literal["dry-run"] = Field("dry-run", description=KIND)
    name: str = Field(min_length=1, description="Display name of the pretend target")
    replicas: int = Field(1, ge=0, description="Replicas the pretend target starts with, a count")

    def build(self, ctx: TargetContext) -> DryRunTarget:
        return DryRunTarget(name=self.name, replicas=self.replicas)


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
