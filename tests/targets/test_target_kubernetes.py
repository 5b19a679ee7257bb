"""The kubernetes target through the official client against a fake API server: scale, errors, no retries."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scaler import retry
from scaler.errors import PermanentError, ProviderError, TransientError
from scaler.targets import kubernetes as kube_target
from scaler.targets.base import KubeSettings, Replicas, TargetContext
from scaler.targets.kubernetes import KubernetesConfig, KubernetesTarget
from tests.support.fake_kube import FakeKube, path_of, write_kubeconfig
from tests.support.prometheus import free_port
from tests.targets.helpers import Sleeps

WEB_SCALE = path_of("deployment", "web", namespace="shop", scale=True)
WEB = path_of("deployment", "web", namespace="shop")


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    # ApiClients are cached per KubeSettings for the process; each test starts with none.
    monkeypatch.setattr(kube_target, "_clients", {})


def target(ctx: TargetContext, name: str = "web", resource: str = "deployment") -> KubernetesTarget:
    made = KubernetesConfig(name=name, namespace="shop", resource=resource).build(ctx)
    assert isinstance(made, KubernetesTarget)
    return made


@pytest.mark.parametrize(
    ("resource", "name", "expected"),
    [("deployment", "web", Replicas(desired=3, ready=2)), ("statefulset", "db", Replicas(desired=2, ready=2))],
    ids=["deployment", "statefulset"],
)
def test_read_takes_desired_from_scale_and_ready_from_status(
    kube: FakeKube, kube_ctx: TargetContext, resource: str, name: str, expected: Replicas
) -> None:
    assert target(kube_ctx, name, resource).read() == expected

    sent = [(r.method, r.path) for r in kube.requests]
    assert sent == [("GET", path_of(resource, name, namespace="shop", scale=True)),
                    ("GET", path_of(resource, name, namespace="shop"))]
    assert {r.headers["authorization"] for r in kube.requests} == {f"Bearer {kube.token}"}


def test_ready_is_zero_when_the_status_leaves_it_out(kube: FakeKube, kube_ctx: TargetContext) -> None:
    kube.add("deployment", "cold", namespace="shop", replicas=4, ready=0)
    assert target(kube_ctx, "cold").read() == Replicas(desired=4, ready=0)


@pytest.mark.parametrize(("resource", "name"), [("deployment", "web"), ("statefulset", "db")],
                         ids=["deployment", "statefulset"])
def test_write_is_one_merge_patch_of_the_scale_subresource(
    kube: FakeKube, kube_ctx: TargetContext, resource: str, name: str
) -> None:
    workload = target(kube_ctx, name, resource)

    workload.write(5)

    [patch] = kube.requests
    assert (patch.method, patch.path) == ("PATCH", path_of(resource, name, namespace="shop", scale=True))
    assert patch.body == {"spec": {"replicas": 5}}
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.headers["authorization"] == f"Bearer {kube.token}"
    # pods are not ready yet: only desired moves
    assert workload.read().desired == 5


@pytest.mark.parametrize(
    ("step", "path", "status", "error", "code"),
    [
        ("read", WEB_SCALE, 429, TransientError, "TooManyRequests"),
        ("read", WEB, 500, TransientError, "InternalError"),
        ("write", WEB_SCALE, 503, TransientError, "ServiceUnavailable"),
        ("write", WEB_SCALE, 403, PermanentError, "Forbidden"),
        ("read", WEB, 403, PermanentError, "Forbidden"),
        ("read", WEB_SCALE, 404, PermanentError, "NotFound"),
        ("write", WEB_SCALE, 422, PermanentError, "Invalid"),
        ("read", WEB_SCALE, 401, PermanentError, "Unauthorized"),
    ],
    ids=["429-read", "500-read-status", "503-write", "403-write", "403-read-status", "404-read", "422-write",
         "401-read"],
)
def test_answers_are_classified_by_status_with_one_request_per_call(
    kube: FakeKube, kube_ctx: TargetContext, step: str, path: str, status: int, error: type[ProviderError],
    code: str,
) -> None:
    kube.fail(path, status, times=5)
    workload = target(kube_ctx)

    with pytest.raises(error) as caught:
        workload.read() if step == "read" else workload.write(4)

    assert type(caught.value) is error
    assert caught.value.code == code
    assert "kubernetes:shop/deployment/web" in str(caught.value)
    assert type(caught.value.__cause__).__module__ == "kubernetes.client.exceptions"
    assert len(kube.requests_to(path)) == 1  # no hidden retry: the caller's policy decides


def test_forbidden_says_which_rights_are_missing(kube: FakeKube, kube_ctx: TargetContext) -> None:
    kube.fail(WEB_SCALE, 403)
    with pytest.raises(PermanentError, match="get and patch on deployments/scale"):
        target(kube_ctx).write(4)


def test_a_missing_workload_is_permanent(kube_ctx: TargetContext) -> None:
    with pytest.raises(PermanentError) as caught:
        target(kube_ctx, "gone").read()
    assert caught.value.code == "NotFound"
    assert "kubernetes:shop/deployment/gone: not found" in str(caught.value)


def test_the_callers_policy_retries_429_twice_then_reads(kube: FakeKube, kube_ctx: TargetContext) -> None:
    kube.fail(WEB_SCALE, 429, times=2)
    sleeps = Sleeps()
    workload = target(kube_ctx)

    got = retry.call(workload.read, policy=retry.RetryPolicy(attempts=5, jitter=0), sleep=sleeps)

    # 429, wait 0.2 s, 429, wait 0.4 s, then the scale and the object
    assert got == Replicas(desired=3, ready=2)
    assert sleeps.waits == [0.2, 0.4]
    assert [len(kube.requests_to(WEB_SCALE)), len(kube.requests_to(WEB))] == [3, 1]


@pytest.mark.parametrize("step", ["read", "write"])
def test_a_dropped_connection_is_transient_and_not_retried(
    kube: FakeKube, kube_ctx: TargetContext, step: str
) -> None:
    kube.drop(WEB_SCALE)
    workload = target(kube_ctx)

    with pytest.raises(TransientError) as caught:
        workload.read() if step == "read" else workload.write(4)

    assert caught.value.code == "ProtocolError"
    # urllib3 would quietly resend it (and succeed) if its retries were left on
    assert len(kube.requests_to(WEB_SCALE)) == 1


def test_a_slow_answer_times_out_as_transient(kube: FakeKube) -> None:
    kube.stall(WEB_SCALE, 5.0)
    ctx = TargetContext(kube=KubeSettings(kubeconfig=kube.kubeconfig, in_cluster=False, timeout=0.3))
    workload = target(ctx)
    started = time.monotonic()

    with pytest.raises(TransientError) as caught:
        workload.read()

    assert caught.value.code == "ReadTimeoutError"
    assert time.monotonic() - started < 3.0  # settings.timeout reached the request, not the 5 s stall


def test_nobody_listening_is_transient(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", server=f"http://127.0.0.1:{free_port()}", token="t")
    workload = target(TargetContext(kube=KubeSettings(kubeconfig=config, in_cluster=False, timeout=2.0)))

    with pytest.raises(TransientError) as caught:
        workload.read()

    assert caught.value.code == "NewConnectionError"


BAD_KUBECONFIGS: dict[str, Callable[[Path], Path]] = {
    "missing-file": lambda d: d / "nope",
    "not-yaml": lambda d: _write(d / "kc", "clusters: [\n"),
    "no-current-context": lambda d: _write(d / "kc", "apiVersion: v1\nkind: Config\nclusters: []\n"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("make", BAD_KUBECONFIGS.values(), ids=BAD_KUBECONFIGS.keys())
def test_a_bad_kubeconfig_is_permanent(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    settings = KubeSettings(kubeconfig=make(tmp_path), in_cluster=False)

    with pytest.raises(PermanentError) as caught:
        KubernetesConfig(name="web").build(TargetContext(kube=settings))

    assert caught.value.code == "BadConfig"
    assert str(tmp_path) in str(caught.value)


def test_an_unknown_context_is_permanent(kube: FakeKube) -> None:
    settings = KubeSettings(kubeconfig=kube.kubeconfig, context="elsewhere", in_cluster=False)
    with pytest.raises(PermanentError, match="cannot use kubeconfig"):
        KubernetesConfig(name="web").build(TargetContext(kube=settings))


def test_in_cluster_is_chosen_when_the_service_host_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside a pod the service-account files are missing, which shows the in-cluster loader was used.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(PermanentError, match="in-cluster service account"):
        KubernetesConfig(name="web").build(TargetContext(kube=KubeSettings(kubeconfig=Path("/unused"))))


def test_the_default_kubeconfig_is_used_outside_a_cluster(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import kube_config

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # what $KUBECONFIG or ~/.kube/config resolved to when the client was imported
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    settings = KubeSettings(timeout=1.5)  # in_cluster=None, kubeconfig=None

    assert target(TargetContext(kube=settings)).read() == Replicas(desired=3, ready=2)


def test_one_api_client_per_settings_with_urllib3_retries_off(kube_ctx: TargetContext) -> None:
    first, second = target(kube_ctx), target(kube_ctx, "db", "statefulset")

    shared = kube_target.api_client(kube_ctx.kube)
    assert first._apps.api_client is shared and second._apps.api_client is shared
    assert shared.configuration.retries is False


def test_without_the_client_package_it_says_what_to_install(
    kube_ctx: TargetContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # makes `import kubernetes` fail
    with pytest.raises(PermanentError, match=r"pip install 'scaler\[kubernetes\]'") as caught:
        KubernetesConfig(name="web").build(kube_ctx)
    assert isinstance(caught.value.__cause__, ImportError)


def test_id() -> None:
    assert KubernetesTarget(object(), name="db", namespace="shop", resource="statefulset", timeout=1).id == (
        "kubernetes:shop/statefulset/db"
    )


def test_a_failure_before_any_answer_is_permanent() -> None:
    from kubernetes.client import ApiException

    class Apps:
        """The client turns TLS failures into ApiException with status 0 before anything is answered."""

        def read_namespaced_deployment_scale(self, **_: object) -> None:
            raise ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED]")

    workload = KubernetesTarget(Apps(), name="web", namespace="shop", resource="deployment", timeout=1)
    with pytest.raises(PermanentError) as caught:
        workload.read()
    assert caught.value.code == "ClientFailure"
