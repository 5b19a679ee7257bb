"""Fixtures for runbook tests: one moto server per session (reset per test), in-process moto, a web server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scaler.clock import FakeClock
from scaler.runbook.service import RunbookService
from tests.runbook.helpers import ClientFor, Web, World, build_world, make_service, web_server
from tests.support.fake_kube import FakeKube, fake_kube
from tests.support.moto_server import MotoServer, moto_server, use_test_credentials


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def moto(moto_session: MotoServer) -> MotoServer:
    use_test_credentials()
    moto_session.reset()
    return moto_session


@pytest.fixture
def server_client(moto: MotoServer) -> ClientFor:
    """Clients the test itself uses to set up and read back state on the moto server."""
    made: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = boto3.client(service, region_name=region, endpoint_url=moto.url)
        return made[(service, region)]

    return client


@pytest.fixture
def server_world(server_client: ClientFor) -> World:
    """What the shipped runbooks touch (ECS is exercised in-process only)."""
    return build_world(server_client, frozenset({"dns", "alb", "standby", "flag", "secrets"}))



@pytest.fixture
def mocked() -> Iterator[ClientFor]:
    """In-process moto (no server): clients for setup and reading back."""
    made: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = boto3.client(service, region_name=region)
        return made[(service, region)]

    with mock_aws():
        yield client


@pytest.fixture
def web() -> Iterator[Web]:
    with web_server() as w:
        yield w


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock) -> RunbookService:
    """A service for in-process moto (no endpoint)."""
    return make_service(tmp_path, clock=clock)


@pytest.fixture
def server_service(tmp_path: Path, clock: FakeClock, moto: MotoServer) -> RunbookService:
    return make_service(tmp_path, endpoint_url=moto.url, clock=clock)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    """A fake API server with Deployment shop/checkout (3 replicas): revision 1 ran shop/checkout:1, the bad
    deploy made revision 2 (shop/checkout:2)."""
    with fake_kube(tmp_path / "kube", token="SECRET-kube-bearer-9f3c") as server:
        server.add("deployment", "checkout", namespace="shop", replicas=3, image="shop/checkout:1")
        server.deploy("checkout", namespace="shop", image="shop/checkout:2")
        yield server
