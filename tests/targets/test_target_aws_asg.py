"""The aws-asg target against in-process moto: counts, bounds, missing groups, and error classification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from scaler import retry
from scaler.errors import PermanentError, ProviderError, TransientError
from scaler.targets.aws_asg import AsgConfig, AsgTarget
from scaler.targets.base import Replicas, TargetContext
from tests.targets.helpers import FailNTimes, Moto, Sleeps


def make_group(moto: Moto, name: str, *, lo: int = 1, hi: int = 5, desired: int = 2) -> None:
    moto("ec2").create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"}
    )
    moto("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": name},
        MinSize=lo,
        MaxSize=hi,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
    )


def target(ctx: TargetContext, name: str) -> AsgTarget:
    made = AsgConfig(name=name).build(ctx)
    assert isinstance(made, AsgTarget)
    return made


def desired_in_moto(moto: Moto, name: str) -> int:
    groups = moto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return int(groups["AutoScalingGroups"][0]["DesiredCapacity"])


def test_read_write_read_back(moto: Moto, aws: TargetContext, name: str) -> None:
    make_group(moto, name, lo=1, hi=5, desired=2)
    asg = target(aws, name)
    assert asg.read() == Replicas(desired=2, ready=2, min=1, max=5)

    asg.write(4)

    # moto brings instances up InService and Healthy at once, so ready follows desired immediately.
    assert asg.read() == Replicas(desired=4, ready=4, min=1, max=5)


def test_ready_counts_only_in_service_and_healthy_instances(moto: Moto, aws: TargetContext, name: str) -> None:
    make_group(moto, name, desired=3)
    client = moto("autoscaling")
    ids = [i["InstanceId"] for i in client.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"]]
    client.set_instance_health(InstanceId=ids[0], HealthStatus="Unhealthy")
    client.enter_standby(AutoScalingGroupName=name, InstanceIds=[ids[1]], ShouldDecrementDesiredCapacity=False)

    # 3 asked for: one InService but Unhealthy, one in Standby, one healthy (+ moto's replacement for the
    # one in Standby) -> 2 ready.
    assert target(aws, name).read() == Replicas(desired=3, ready=2, min=1, max=5)


@pytest.mark.parametrize("asked", [0, 6], ids=["below-min-1", "above-max-5"])
def test_write_outside_the_groups_bounds_is_refused_before_any_change(
    moto: Moto, aws: TargetContext, name: str, asked: int
) -> None:
    make_group(moto, name, lo=1, hi=5, desired=2)
    set_desired = FailNTimes(0)
    aws.aws.client("autoscaling").meta.events.register("before-call.autoscaling.SetDesiredCapacity", set_desired)

    with pytest.raises(PermanentError) as caught:
        target(aws, name).write(asked)

    assert caught.value.code == "ValidationError"
    assert f"aws-asg:us-east-1/{name}" in str(caught.value)
    assert set_desired.calls == 0  # refused here: moto would have accepted 6, AWS would not
    assert desired_in_moto(moto, name) == 2


@pytest.mark.parametrize("step", [AsgTarget.read, lambda t: t.write(1)], ids=["read", "write"])
def test_a_missing_group_is_permanent(aws: TargetContext, name: str, step: Callable[[AsgTarget], Any]) -> None:
    with pytest.raises(PermanentError) as caught:
        step(target(aws, name))
    assert caught.value.code == "NotFound"
    assert f"aws-asg:us-east-1/{name}" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "code", "status", "error"),
    [
        ("SetDesiredCapacity", "ThrottlingException", 400, TransientError),
        ("SetDesiredCapacity", "Throttling", 400, TransientError),
        ("DescribeAutoScalingGroups", "ServiceUnavailable", 503, TransientError),
        ("SetDesiredCapacity", "AccessDenied", 403, PermanentError),
        ("DescribeAutoScalingGroups", "AccessDenied", 403, PermanentError),
        ("SetDesiredCapacity", "ValidationError", 400, PermanentError),
    ],
    ids=["throttled-write", "throttled-query-api", "unavailable-describe", "denied-write", "denied-describe",
         "invalid-write"],
)
def test_provider_errors_are_classified_by_code_and_not_retried(
    moto: Moto, aws: TargetContext, name: str, operation: str, code: str, status: int, error: type[ProviderError]
) -> None:
    make_group(moto, name)
    fault = FailNTimes(1, code, status)
    aws.aws.client("autoscaling").meta.events.register(f"before-call.autoscaling.{operation}", fault)

    with pytest.raises(error) as caught:
        target(aws, name).write(3)

    assert type(caught.value) is error
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, ClientError)
    assert fault.calls == 1  # one call, no hidden retry: the caller's policy decides
    assert desired_in_moto(moto, name) == 2


def test_the_callers_retry_policy_gets_a_throttled_write_through(moto: Moto, aws: TargetContext, name: str) -> None:
    make_group(moto, name)
    fault = FailNTimes(2)
    aws.aws.client("autoscaling").meta.events.register("before-call.autoscaling.SetDesiredCapacity", fault)
    sleeps = Sleeps()
    asg = target(aws, name)

    retry.call(lambda: asg.write(4), policy=retry.RetryPolicy(attempts=5, jitter=0), sleep=sleeps)

    # throttled twice (waits 0.2 s, 0.4 s), the third SetDesiredCapacity goes through
    assert (fault.calls, sleeps.waits) == (3, [0.2, 0.4])
    assert desired_in_moto(moto, name) == 4


def test_id_names_the_region_the_group_lives_in(aws: TargetContext) -> None:
    assert target(aws, "web").id == "aws-asg:us-east-1/web"
    other = AsgConfig(name="web", region="eu-west-1").build(aws)
    assert other.id == "aws-asg:eu-west-1/web"
    assert isinstance(other, AsgTarget)
    assert other._client.meta.region_name == "eu-west-1"
