"""The aws-ecs target against in-process moto: desiredCount and runningCount, missing and deleted services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from scaler.errors import PermanentError, TransientError
from scaler.targets.aws_ecs import EcsConfig, EcsTarget
from scaler.targets.base import Replicas, TargetContext
from tests.targets.helpers import FailNTimes, Moto


@dataclass(frozen=True)
class Cluster:
    name: str
    network: dict[str, Any]  # networkConfiguration for a FARGATE service

    def add_service(self, moto: Moto, name: str, *, desired: int) -> None:
        moto("ecs").create_service(
            cluster=self.name,
            serviceName=name,
            taskDefinition="web",
            desiredCount=desired,
            launchType="FARGATE",
            networkConfiguration=self.network,
        )


@pytest.fixture(scope="module")
def cluster(moto: Moto) -> Cluster:
    """A cluster and a FARGATE task definition; the awsvpc subnet must exist in moto's EC2."""
    ec2 = moto("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")
    group = ec2.create_security_group(GroupName="svc", Description="svc", VpcId=vpc)["GroupId"]
    ecs = moto("ecs")
    ecs.create_cluster(clusterName="shop")
    ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    network = {"awsvpcConfiguration": {
        "subnets": [subnet["Subnet"]["SubnetId"]],
        "securityGroups": [group],  # moto answers HTTP 500 without them
    }}
    return Cluster("shop", network)


def target(ctx: TargetContext, cluster: str, service: str) -> EcsTarget:
    made = EcsConfig(cluster=cluster, service=service).build(ctx)
    assert isinstance(made, EcsTarget)
    return made


def test_read_write_read_back(moto: Moto, aws: TargetContext, cluster: Cluster, name: str) -> None:
    cluster.add_service(moto, name, desired=2)
    ecs = target(aws, cluster.name, name)
    # moto starts no task for a new service; AWS would be starting two
    assert ecs.read() == Replicas(desired=2, ready=0)

    ecs.write(4)

    # and after an update moto sets runningCount straight to desired
    assert ecs.read() == Replicas(desired=4, ready=4)
    assert ecs.id == f"aws-ecs:us-east-1/shop/{name}"


def test_a_missing_service_is_permanent(aws: TargetContext, cluster: Cluster, name: str) -> None:
    with pytest.raises(PermanentError) as caught:
        target(aws, cluster.name, name).read()
    assert caught.value.code == "MISSING"  # a `failures` entry, not an error code
    assert f"aws-ecs:us-east-1/shop/{name}" in str(caught.value)


def test_writing_a_missing_service_is_permanent(aws: TargetContext, cluster: Cluster, name: str) -> None:
    with pytest.raises(PermanentError) as caught:
        target(aws, cluster.name, name).write(1)
    assert caught.value.code == "ServiceNotFoundException"
    assert isinstance(caught.value.__cause__, ClientError)


def test_a_missing_cluster_is_permanent(aws: TargetContext, name: str) -> None:
    with pytest.raises(PermanentError) as caught:
        target(aws, name, "web").read()
    assert caught.value.code == "ClusterNotFoundException"


def test_a_deleted_service_is_permanent(moto: Moto, aws: TargetContext, cluster: Cluster, name: str) -> None:
    cluster.add_service(moto, name, desired=0)
    moto("ecs").delete_service(cluster=cluster.name, service=name)

    with pytest.raises(PermanentError) as caught:
        target(aws, cluster.name, name).read()

    assert caught.value.code == "INACTIVE"


def test_a_throttled_update_is_transient_and_sent_once(
    moto: Moto, aws: TargetContext, cluster: Cluster, name: str
) -> None:
    cluster.add_service(moto, name, desired=2)
    fault = FailNTimes(1)
    aws.aws.client("ecs").meta.events.register("before-call.ecs.UpdateService", fault)
    ecs = target(aws, cluster.name, name)

    with pytest.raises(TransientError) as caught:
        ecs.write(4)

    assert (caught.value.code, fault.calls) == ("ThrottlingException", 1)
    assert ecs.read().desired == 2
