"""Reaching the Kubernetes API with the official client: where to connect, one ApiClient, errors classified."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urllib3.exceptions import HTTPError

from scaler.errors import PermanentError, ProviderError, TransientError

PROVIDER = "kubernetes"


@dataclass(frozen=True)
class KubeSettings:
    """How to reach the Kubernetes API: in-cluster service account, or a kubeconfig file and context."""

    in_cluster: bool | None = None  # None: in-cluster when KUBERNETES_SERVICE_HOST is set, else kubeconfig
    kubeconfig: Path | None = None  # default: $KUBECONFIG or ~/.kube/config
    context: str | None = None
    timeout: float = 10.0  # seconds per API request


def client_module() -> Any:
    """`kubernetes.client`, imported on first use so that nothing else ever pulls in the kubernetes package."""
    try:
        from kubernetes import client
    except ImportError as e:
        raise PermanentError(
            "talking to Kubernetes needs the kubernetes client: pip install 'scaler[kubernetes]'",
            provider=PROVIDER,
            code="MissingDependency",
        ) from e
    return client


def new_api_client(settings: KubeSettings) -> Any:
    """A kubernetes.client.ApiClient for `settings`, with urllib3's own retries off (the caller owns retries)."""
    client = client_module()
    from kubernetes import config

    in_cluster = settings.in_cluster
    if in_cluster is None:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,  # never rewrite the user's kubeconfig (token refreshes stay in memory)
            )
    except Exception as e:
        # ConfigException, YAMLError, OSError or a TypeError from an odd shape: all need a person, not a retry.
        where = (
            "the in-cluster service account"
            if in_cluster
            else (f"kubeconfig {settings.kubeconfig or '($KUBECONFIG or ~/.kube/config)'}")
        )
        raise PermanentError(
            f"kubernetes: cannot use {where}: {type(e).__name__}: {e}", provider=PROVIDER, code="BadConfig"
        ) from e
    # urllib3 would retry connection errors 3 times on its own; the caller's policy owns every retry.
    configuration.retries = False
    configuration.client_go_retries = False
    return client.ApiClient(configuration)


def status_body(body: Any) -> dict[str, Any]:
    """The Kubernetes Status object an error answer carries, or {} when it carries something else."""
    try:
        parsed = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def classify(error: BaseException, what: str) -> ProviderError:
    """An error of one API request about `what` as TransientError or PermanentError, by HTTP status only.

    429 and 5xx are worth another try, and so is no answer at all (refused, reset, timed out); a status 0
    (the client failed before any answer: TLS, an unencodable body) and every other refusal are not.
    """
    api_exception = client_module().ApiException
    if isinstance(error, api_exception):
        status = int(error.status or 0)
        if status == 0:
            return PermanentError(
                f"{what}: the request could not be made: {error.reason}", provider=PROVIDER, code="ClientFailure"
            )
        body = status_body(error.body)
        code = str(body.get("reason") or error.reason or status)
        detail = f"(HTTP {status} {code})" + (f": {body['message']}" if body.get("message") else "")
        kind = TransientError if status == 429 or status >= 500 else PermanentError
        return kind(f"{what}: refused {detail}", provider=PROVIDER, code=code)
    if isinstance(error, HTTPError | OSError):
        name = type(error).__name__
        return TransientError(f"{what}: no answer from the API server ({name})", provider=PROVIDER, code=name)
    if isinstance(error, ValueError):
        return PermanentError(
            f"{what}: unreadable answer from the API server: {error}", provider=PROVIDER, code="BadResponse"
        )
    return PermanentError(f"{what}: {type(error).__name__}", provider=PROVIDER, code=type(error).__name__)
