"""A Deployment or StatefulSet as a scale target, through its scale subresource with the official client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import Field
from urllib3.exceptions import HTTPError

from scaler.errors import PermanentError, ProviderError, TransientError
from scaler.kube import PROVIDER, KubeSettings, client_module, new_api_client, status_body
from scaler.targets.base import KIND, Replicas, TargetConfig, TargetContext

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
# resource -> (the client's method infix, the URL's plural)
RESOURCES = {"deployment": ("deployment", "deployments"), "statefulset": ("stateful_set", "statefulsets")}

# What a refusal means, by HTTP status only, in words an operator can act on.
HINTS = {
    401: "unauthorized: the API server rejected the credentials",
    403: "forbidden: the identity needs get and patch on {plural}/scale and get on {plural}",
    404: "not found in this cluster",
    422: "invalid: the API server refused the replica count",
}


class KubernetesConfig(TargetConfig):
    """A Deployment or StatefulSet."""

    kind: Literal["kubernetes"] = Field("kubernetes", description=KIND)
    name: str = Field(min_length=1, description="Name of the Deployment or StatefulSet")
    namespace: str = Field("default", min_length=1, description="Namespace the workload lives in")
    resource: Literal["deployment", "statefulset"] = Field(
        "deployment", description="Workload type; replicas are its pods, scaled through /scale"
    )

    def build(self, ctx: TargetContext) -> KubernetesTarget:
        apps = client_module().AppsV1Api(api_client(ctx.kube))
        return KubernetesTarget(
            apps, name=self.name, namespace=self.namespace, resource=self.resource, timeout=ctx.kube.timeout
        )


_clients: dict[KubeSettings, Any] = {}
_clients_lock = threading.Lock()


def api_client(settings: KubeSettings) -> Any:
    """The one kubernetes.client.ApiClient for `settings`, made on first use and shared by every target."""
    with _clients_lock:
        found = _clients.get(settings)
        if found is None:
            found = _clients[settings] = new_api_client(settings)
        return found


class KubernetesTarget:
    """One workload: reads /scale and the object's status (two GETs), writes /scale (one PATCH)."""

    def __init__(self, apps: Any, *, name: str, namespace: str, resource: str, timeout: float) -> None:
        self._apps = apps  # kubernetes.client.AppsV1Api
        self.name = name
        self.namespace = namespace
        self.resource = resource
        self.timeout = timeout
        self._infix, self._plural = RESOURCES[resource]

    @property
    def id(self) -> str:
        return f"kubernetes:{self.namespace}/{self.resource}/{self.name}"

    def read(self) -> Replicas:
        scale = self._call(getattr(self._apps, f"read_namespaced_{self._infix}_scale"))
        workload = self._call(getattr(self._apps, f"read_namespaced_{self._infix}"))
        # The API server leaves readyReplicas out when it is zero.
        ready = workload.status.ready_replicas if workload.status is not None else None
        return Replicas(desired=int(scale.spec.replicas or 0), ready=int(ready or 0))

    def write(self, replicas: int) -> None:
        self._call(
            getattr(self._apps, f"patch_namespaced_{self._infix}_scale"),
            body={"spec": {"replicas": replicas}},
            _content_type=MERGE_PATCH,
        )

    def _call(self, method: Callable[..., T], **args: Any) -> T:
        api_exception = client_module().ApiException
        try:
            return method(name=self.name, namespace=self.namespace, _request_timeout=self.timeout, **args)
        except api_exception as e:
            raise self._refused(e) from e
        except (HTTPError, OSError) as e:
            # Connection refused or reset, read timeout: with retries off, urllib3 raises these as they are.
            raise TransientError(
                f"{self.id}: no answer from the API server ({type(e).__name__})",
                provider=PROVIDER,
                code=type(e).__name__,
            ) from e
        except ValueError as e:
            # The answer did not deserialize into the object asked for (pydantic's ValidationError).
            raise PermanentError(
                f"{self.id}: unreadable answer from the API server: {e}", provider=PROVIDER, code="BadResponse"
            ) from e

    def _refused(self, error: Any) -> ProviderError:
        status = int(error.status or 0)
        if status == 0:
            # The client failed before any answer (TLS handshake or certificate, a body it cannot encode):
            # the same request fails the same way again.
            return PermanentError(
                f"{self.id}: the request could not be made: {error.reason}", provider=PROVIDER, code="ClientFailure"
            )
        body = status_body(error.body)
        code = str(body.get("reason") or error.reason or status)
        detail = f"(HTTP {status} {code})"
        if body.get("message"):
            detail += f": {body['message']}"
        if status == 429 or status >= 500:
            return TransientError(f"{self.id}: API server busy or failing {detail}", provider=PROVIDER, code=code)
        hint = HINTS.get(status, "refused").format(plural=self._plural)
        return PermanentError(f"{self.id}: {hint} {detail}", provider=PROVIDER, code=code)
