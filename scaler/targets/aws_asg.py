"""An EC2 Auto Scaling group as a scale target: DesiredCapacity, InService+Healthy instances, MinSize..MaxSize."""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from scaler.aws import classify
from scaler.errors import PermanentError
from scaler.targets.base import KIND, REGION, Replicas, TargetConfig, TargetContext

PROVIDER = "autoscaling"


class AsgConfig(TargetConfig):
    """An EC2 Auto Scaling group."""

    kind: Literal["aws-asg"] = Field("aws-asg", description=KIND)
    name: str = Field(min_length=1, description="EC2 Auto Scaling group name")
    region: str | None = Field(None, min_length=1, description=REGION)

    def build(self, ctx: TargetContext) -> AsgTarget:
        region = self.region or ctx.aws.settings.region
        return AsgTarget(ctx.aws.client("autoscaling", region), name=self.name, region=region)


class AsgTarget:
    """One group, read with DescribeAutoScalingGroups and written with SetDesiredCapacity (one call each)."""

    def __init__(self, client: Any, *, name: str, region: str) -> None:
        self._client = client
        self.name = name
        self.region = region

    @property
    def id(self) -> str:
        return f"aws-asg:{self.region}/{self.name}"

    def read(self) -> Replicas:
        group = self._describe()
        ready = sum(
            1
            for i in group.get("Instances", [])
            if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"
        )
        return Replicas(
            desired=int(group["DesiredCapacity"]),
            ready=ready,
            min=int(group["MinSize"]),
            max=int(group["MaxSize"]),
        )

    def write(self, replicas: int) -> None:
        # The bounds are read fresh: someone may have changed MinSize/MaxSize since the loop's last read.
        group = self._describe()
        lo, hi = int(group["MinSize"]), int(group["MaxSize"])
        if not lo <= replicas <= hi:
            # AWS answers ValidationError here; moto accepts it, so refuse before asking either.
            raise PermanentError(
                f"{self.id}: desired {replicas} outside the group's MinSize {lo} .. MaxSize {hi}",
                provider=PROVIDER,
                code="ValidationError",
            )
        try:
            # HonorCooldown=False: the policy's own stabilization and rate limits already decided the timing.
            self._client.set_desired_capacity(
                AutoScalingGroupName=self.name, DesiredCapacity=replicas, HonorCooldown=False
            )
        except (ClientError, BotoCoreError) as e:
            raise classify(e, provider=PROVIDER) from e

    def _describe(self) -> dict[str, Any]:
        try:
            found = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])
        except (ClientError, BotoCoreError) as e:
            raise classify(e, provider=PROVIDER) from e
        groups = found.get("AutoScalingGroups", [])
        if not groups:
            # AWS answers an unknown name with an empty list, not an error code.
            raise PermanentError(f"{self.id}: no such auto scaling group", provider=PROVIDER, code="NotFound")
        return groups[0]
