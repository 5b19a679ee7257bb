"""The shipped example can be looked at before anything is set up: `scaler status` and `scaler run --dry-run
--once` on examples/run.yaml, with no notification secret set and no kubeconfig, warn about the channels and the
target they concern and show the rest; a real run still refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import yaml

from tests.conftest import ROOT
from tests.sources.fakes import recording_server, vector
from tests.support.live import ChatReceiver
from tests.support.moto_server import MotoServer

SECRETS = ("SCALER_SLACK_TEAM", "SCALER_SMTP_PASSWORD", "SCALER_SLACK_ONCALL")


def example(tmp_path: Path, edit: dict[str, Any] | None = None) -> Path:
    """examples/run.yaml where its relative paths still lead to the policies and runbooks, and its state stays in
    `tmp_path`; `edit` replaces top-level sections."""
    (tmp_path / "policies").symlink_to(ROOT / "policies")
    (tmp_path / "runbooks").symlink_to(ROOT / "runbooks")
    (tmp_path / "examples").mkdir()
    text = (ROOT / "examples" / "run.yaml").read_text()
    if edit:
        text = yaml.safe_dump({**yaml.safe_load(text), **edit}, sort_keys=False)
    path = tmp_path / "examples" / "run.yaml"
    path.write_text(text)
    return path


def scaler(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (*SECRETS, "KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask a metadata service for credentials
    return subprocess.run([sys.executable, "-m", "scaler", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def test_status_with_no_secrets_and_no_saved_state_warns_and_says_so(tmp_path: Path) -> None:
    path = example(tmp_path)
    result = scaler("status", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "web: no decision saved yet\n"
    assert result.stderr.splitlines() == [
        "warning: notify[1].url_env: environment variable SCALER_SLACK_TEAM is not set (channel team is off)",
        "warning: notify[2].password_env: environment variable SCALER_SMTP_PASSWORD is not set (channel team-mail "
        "is off)",
    ]
    assert not (tmp_path / "state").exists()  # looking created no state file


def make_targets(moto: MotoServer) -> None:
    """The example's AWS targets on the moto server: ASG web-asg (2) and ECS service shop/api (2)."""
    def client(service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=moto.url)

    ec2, asg, ecs = client("ec2"), client("autoscaling"), client("ecs")
    lt = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12345678",
                                                                                  "InstanceType": "t3.micro"})
    asg.create_auto_scaling_group(AutoScalingGroupName="web-asg", MinSize=1, MaxSize=10, DesiredCapacity=3,
                                  AvailabilityZones=["us-east-1a"],
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]})
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="api", Description="api", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="shop")
    ecs.register_task_definition(family="api", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                 cpu="256", memory="512",
                                 containerDefinitions=[{"name": "api", "image": "api:1", "essential": True}])
    ecs.create_service(cluster="shop", serviceName="api", taskDefinition="api", desiredCount=3,
                       launchType="FARGATE",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}})


def test_a_dry_run_once_leaves_out_the_channels_and_the_target_it_cannot_reach(
        tmp_path: Path, moto: MotoServer) -> None:
    make_targets(moto)
    original = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    alertmanager = ChatReceiver()  # stands in for Alertmanager's API: records what it is sent
    series = [({"service": s}, "0.01") for s in ("web", "api", "checkout", "search")]
    try:
        with recording_server(200, vector(*series)) as (prometheus, _):
            notify = [dict(original["notify"][0], url=alertmanager.url.removesuffix("/hook")),
                      *original["notify"][1:]]
            path = example(tmp_path, {
                "prometheus": {**original["prometheus"], "url": prometheus},
                "aws": {**original["aws"], "endpoint_url": moto.url},
                "notify": notify,
                # the HTTP health checks would probe hosts outside this machine
                "health_rules": [r for r in original["health_rules"] if "http" not in r],
            })
            looked = scaler("run", str(path), "--dry-run", "--once", "--log-format", "text", cwd=tmp_path)
            refused = scaler("run", str(path), "--once", "--log-format", "text", cwd=tmp_path)
    finally:
        alertmanager.close()
    assert looked.returncode == 0, looked.stdout + looked.stderr
    for target in ("aws-asg:us-east-1/web-asg", "aws-ecs:us-east-1/shop/api", "dry-run:search"):
        assert target in looked.stdout, looked.stdout
    assert "web: target checkout (kubernetes) left out of this dry run: " in looked.stdout
    assert "kubeconfig" in looked.stdout
    warnings = [line for line in looked.stderr.splitlines() if " WARNING " in line]
    assert any("environment variable SCALER_SLACK_TEAM is not set (channel team is off)" in w for w in warnings)
    assert any("SCALER_SMTP_PASSWORD is not set (channel team-mail is off)" in w for w in warnings)
    assert any("target checkout (kubernetes) left out of this dry run" in w for w in warnings)
    assert "Traceback" not in looked.stderr
    # a real run does not go on without the channels it was given
    assert refused.returncode == 2 and "notify[1].url_env" in refused.stderr and "notify[2].password_env" in \
        refused.stderr
