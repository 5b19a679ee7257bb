"""Fixtures for scale-target tests: fake AWS credentials, in-process moto, a fake Kubernetes API server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scaler.aws import AwsClients, AwsSettings
from scaler.targets.base import KubeSettings, TargetContext
from tests.support.fake_kube import FakeKube, fake_kube
from tests.support.moto_server import CREDENTIALS
from tests.targets.helpers import Moto


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same environment tests/support/moto_server.use_test_credentials sets, undone after each test.
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for var in ("AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """In-process moto for one test module, and a client factory (us-east-1) for setting up and checking.

    Tests share it and keep apart by naming every resource their own way (see `name`): a fresh EC2
    backend and fresh EC2 clients cost 1-2 s per test, which is most of a test's time otherwise.
    """
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name="us-east-1")
        return made[service]

    with mock_aws():
        yield client


@pytest.fixture
def aws(moto: Moto) -> TargetContext:
    """A context whose AWS clients (us-east-1, botocore retries off) talk to in-process moto.

    The clients are new for every test, so fault hooks registered on them end with the test.
    """
    return TargetContext(aws=AwsClients(AwsSettings(region="us-east-1")))


@pytest.fixture
def name() -> str:
    """A resource name no other test in the module uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    """A fake API server with shop/web (Deployment, 3 asked, 2 ready) and shop/db (StatefulSet, 2 and 2)."""
    with fake_kube(tmp_path / "kube") as server:
        server.add("deployment", "web", namespace="shop", replicas=3, ready=2)
        server.add("statefulset", "db", namespace="shop", replicas=2, ready=2)
        yield server


@pytest.fixture
def kube_ctx(kube: FakeKube) -> TargetContext:
    """A context that reaches the fake server through its kubeconfig (short timeout: nothing here is slow)."""
    return TargetContext(kube=KubeSettings(kubeconfig=kube.kubeconfig, in_cluster=False, timeout=2.0))
