"""An ECS service as a scale target: desiredCount to ask for, runningCount as ready."""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from scaler.aws import classify
from scaler.errors import PermanentError
from scaler.targets.base import KIND, REGION, Replicas, TargetConfig, TargetContext

PROVIDER = "ecs"


class EcsConfig(TargetConfig):
    """An ECS service."""

    kind: Literal["aws-ecs"] = Field("aws-ecs", description=KIND)
    cluster: str = Field(min_length=1, description="ECS cluster name or ARN")
    service: str = Field(min_length=1, description="ECS service name or ARN; replicas are its tasks")
    region: str | None = Field(None, min_length=1, description=REGION)

    def build(self, ctx: TargetContext) -> EcsTarget:
        region = self.region or ctx.aws.settings.region
        return EcsTarget(ctx.aws.client("ecs", region), cluster=self.cluster, service=self.service, region=region)


class EcsTarget:
    """One service, read with DescribeServices and written with UpdateService (one call each)."""

    def __init__(self, client: Any, *, cluster: str, service: str, region: str) -> None:
        self._client = client
        self.cluster = cluster
        self.service = service
        self.region = region

    @property
    def id(self) -> str:
        return f"aws-ecs:{self.region}/{self.cluster}/{self.service}"

    def read(self) -> Replicas:
        try:
            found = self._client.describe_services(cluster=self.cluster, services=[self.service])
        except (ClientError, BotoCoreError) as e:
            raise classify(e, provider=PROVIDER) from e
        # An unknown service is not an error code here but a `failures` entry (reason MISSING).
        failures = found.get("failures") or []
        if failures:
            reason = str(failures[0].get("reason") or "failure")
            raise PermanentError(f"{self.id}: describe_services failed: {reason}", provider=PROVIDER, code=reason)
        services = found.get("services", [])
        if not services:
            raise PermanentError(f"{self.id}: no such service", provider=PROVIDER, code="MISSING")
        service = services[0]
        status = str(service.get("status", ""))
        if status != "ACTIVE":
            # DRAINING is a service being deleted, INACTIVE one already deleted: neither can be scaled.
            raise PermanentError(f"{self.id}: service is {status or 'not active'}", provider=PROVIDER, code=status)
        return Replicas(desired=int(service["desiredCount"]), ready=int(service["runningCount"]))

    def write(self, replicas: int) -> None:
        try:
            self._client.update_service(cluster=self.cluster, service=self.service, desiredCount=replicas)
        except (ClientError, BotoCoreError) as e:
            raise classify(e, provider=PROVIDER) from e
