"""Kubernetes rollback as `kubectl rollout undo` does it, waiting for the rollout as `kubectl rollout status` does."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from scaler.errors import PermanentError
from scaler.kube import PROVIDER, KubeSettings, classify, client_module, new_api_client
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.errors import StepTimeout
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# On a Deployment: the ReplicaSet a scaler rollback went back to. While the Deployment still runs that
# ReplicaSet's template, its version is a rollback, and a second alert must not roll it back again (kubectl's
# undo of an undo goes forward to the bad revision).
MARK = "scaler.io/rolled-back-to"
# Annotations a rollback keeps from the Deployment instead of copying them from the ReplicaSet (kubectl's list).
KEEP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
JSON_PATCH = "application/json-patch+json"


class KubeInputs(Inputs):
    """Which Deployment, and how to reach its API server (as a kubernetes scale target does)."""

    namespace: str = Field("default", min_length=1)
    name: str = Field(min_length=1, description="Deployment name")
    kubeconfig: str | None = Field(None, description="kubeconfig file; default: $KUBECONFIG or ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context; default: its current context")
    in_cluster: bool | None = Field(None, description="Default: in-cluster when KUBERNETES_SERVICE_HOST is set")
    request_timeout: PositiveSeconds = Field(10.0, description="Seconds per API request")


class Apps:
    """The apps/v1 requests these actions make, as plain JSON (field names as the API spells them), each
    retried on the run's clock and its errors classified by HTTP status."""

    def __init__(self, ctx: ActionContext, inputs: KubeInputs) -> None:
        self.ctx = ctx
        self.inputs = inputs
        self.where = f"kubernetes:{inputs.namespace}/deployment/{inputs.name}"
        settings = KubeSettings(
            in_cluster=inputs.in_cluster,
            kubeconfig=Path(inputs.kubeconfig) if inputs.kubeconfig else None,
            context=inputs.context,
            timeout=inputs.request_timeout,
        )
        self.client = new_api_client(settings)
        self.api = client_module().AppsV1Api(self.client)

    def __enter__(self) -> Apps:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def _call(self, what: str, method: Callable[..., Any], **args: Any) -> Any:
        """One API request through the run's context: audited (service "kubernetes", the request named by
        `what`, its arguments but not a patch's body), retried on 429, 5xx and no answer as AWS calls are."""

        def once() -> Any:
            # within the step's time left (at least a second), as an AWS call or an HTTP request is
            left = max(1.0, self.ctx.deadline - self.ctx.clock.now())
            answer = method(_request_timeout=min(self.inputs.request_timeout, left), _preload_content=False, **args)
            return json.loads(answer.data)  # a body that is not JSON is classified as the API's errors are

        told = {"namespace": self.inputs.namespace, **{k: v for k, v in args.items() if k not in ("body",
                                                                                                "_content_type")}}
        return self.ctx.call(PROVIDER, what, once, args=told, classify=lambda e: classify(e, f"{self.where}: {what}"),
                             describe=_described)

    def deployment(self) -> dict[str, Any]:
        return self._call(
            "get deployment",
            self.api.read_namespaced_deployment,
            name=self.inputs.name,
            namespace=self.inputs.namespace,
        )

    def replica_sets(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets the Deployment controls (selected by its labels, then by owner), oldest first."""
        selector = deployment["spec"].get("selector") or {}
        labels = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
        args = {"label_selector": labels} if labels and not selector.get("matchExpressions") else {}
        found = self._call(
            "list replicasets", self.api.list_namespaced_replica_set, namespace=self.inputs.namespace, **args
        )
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in found.get("items") or []
            if any(o.get("uid") == uid and o.get("controller") for o in rs["metadata"].get("ownerReferences") or [])
        ]
        return sorted(owned, key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"]))

    def patch(self, body: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call(
            "patch deployment",
            self.api.patch_namespaced_deployment,
            name=self.inputs.name,
            namespace=self.inputs.namespace,
            body=body,
            _content_type=JSON_PATCH,
        )


def _described(answer: Any) -> dict[str, Any]:
    """What the audit line keeps of an answer: the object's name and resourceVersion, or a list's length."""
    if isinstance(answer, Mapping):
        if isinstance(answer.get("items"), list):
            return {"items": len(answer["items"])}
        meta = answer.get("metadata") or {}
        return {k: meta[k] for k in ("name", "resourceVersion", "generation") if k in meta}
    return {}


def revision(obj: Mapping[str, Any]) -> int | None:
    text = (obj["metadata"].get("annotations") or {}).get(REVISION)
    return int(text) if text is not None and str(text).isdigit() else None


def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A pod template without the label the controller adds to each ReplicaSet's copy of it."""
    out = copy.deepcopy(dict(template))
    labels = (out.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return out


def same_template(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return without_hash(a) == without_hash(b)


def current(deployment: Mapping[str, Any], owned: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ReplicaSet running the Deployment's template now (the oldest, if several match, as kubectl picks)."""
    return next((rs for rs in owned if same_template(rs["spec"]["template"], deployment["spec"]["template"])), None)


def pick(owned: list[dict[str, Any]], to_revision: int | None) -> dict[str, Any]:
    """kubectl's choice: the ReplicaSet with `to_revision`, or else the one with the second-highest revision."""
    numbered = sorted(((revision(rs), rs) for rs in owned if revision(rs) is not None), key=lambda p: p[0])
    if to_revision is not None:
        found = next((rs for n, rs in numbered if n == to_revision), None)
        if found is None:
            raise PermanentError(
                f"no revision {to_revision} in the rollout history", provider=PROVIDER, code="RevisionNotFound"
            )
        return found
    if len(numbered) < 2:
        raise PermanentError("no earlier revision in the rollout history", provider=PROVIDER, code="NoPreviousRevision")
    return numbered[-2][1]


def progress(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, what is happening), as `kubectl rollout status` reads a Deployment; a rollout past its progress
    deadline fails. 3 replicas wanted, 3 updated, 2 available -> (False, '2 of 3 updated replicas are available')."""
    meta, spec, st = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    if meta.get("generation", 0) > st.get("observedGeneration", 0):
        return False, "waiting for the deployment spec update to be observed"
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise PermanentError(
                f"rollout exceeded its progress deadline: {cond.get('message', '')}".rstrip(": "),
                provider=PROVIDER,
                code="ProgressDeadlineExceeded",
            )
    wanted = spec.get("replicas", 1)
    updated, total, available = (st.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < wanted:
        return False, f"{updated} out of {wanted} new replicas have been updated"
    if total > updated:
        return False, f"{total - updated} old replicas are pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, "successfully rolled out"


def images(deployment: Mapping[str, Any]) -> list[str]:
    return [c.get("image", "") for c in deployment["spec"]["template"].get("spec", {}).get("containers", [])]


def rolled_back(deployment: Mapping[str, Any], owned: list[dict[str, Any]]) -> bool:
    """The Deployment runs the template of the ReplicaSet a scaler rollback went back to."""
    now = current(deployment, owned)
    mark = (deployment["metadata"].get("annotations") or {}).get(MARK)
    return now is not None and mark == now["metadata"]["name"]


def undo_patch(deployment: Mapping[str, Any], target: Mapping[str, Any]) -> list[dict[str, Any]]:
    """kubectl's rollback patch: the ReplicaSet's template (its hash label removed) and its annotations, except
    those the Deployment keeps (KEEP), plus the rollback mark."""
    annotations = {k: v for k, v in (deployment["metadata"].get("annotations") or {}).items() if k in KEEP}
    annotations |= {k: v for k, v in (target["metadata"].get("annotations") or {}).items() if k not in KEEP}
    annotations[MARK] = target["metadata"]["name"]
    return [
        {"op": "replace", "path": "/spec/template", "value": without_hash(target["spec"]["template"])},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


class UndoInputs(KubeInputs):
    to_revision: int | None = Field(None, ge=1, description="Revision to go to; default: the previous one")
    interval: PositiveSeconds = Field(5.0, description="Seconds between looks while the rollout settles")


class RolloutUndo(Action[UndoInputs]):
    name = "kubernetes.rollout_undo"
    summary = "Roll a Deployment back to its previous revision (as kubectl rollout undo) and wait for the rollout"
    inputs = UndoInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        where = {"namespace": inputs.get("namespace", "default"), "name": inputs.get("name")}
        return [
            read("kubernetes", "get deployment", **where),
            read("kubernetes", "list replicasets", namespace=where["namespace"]),
            call(
                "kubernetes", "patch deployment", **where, template=f"<revision {inputs.get('to_revision') or 'N-1'}>"
            ),
            read("kubernetes", "get deployment", **where),
        ]

    def run(self, inputs: UndoInputs, ctx: ActionContext) -> dict[str, Any]:
        with Apps(ctx, inputs) as apps:
            return self.undo(apps, inputs, ctx)

    @staticmethod
    def undo(apps: Apps, inputs: UndoInputs, ctx: ActionContext) -> dict[str, Any]:
        deployment = apps.deployment()
        if deployment["spec"].get("paused"):
            raise PermanentError(
                f"{apps.where}: paused; resume it before rolling back", provider=PROVIDER, code="Paused"
            )
        owned = apps.replica_sets(deployment)
        now = current(deployment, owned)

        def choose() -> dict[str, Any]:
            target = pick(owned, inputs.to_revision)
            return {
                "from": None if now is None else now["metadata"]["name"],
                "from_revision": revision(deployment),
                "to": target["metadata"]["name"],
                "to_revision": revision(target),
            }

        # Chosen once: a re-run after a crash finds the rollback done (or still to do), never a second one.
        plan = ctx.memo("undo", choose)
        target = next((rs for rs in owned if rs["metadata"]["name"] == plan["to"]), None)
        if target is None:
            raise PermanentError(
                f"{apps.where}: replica set {plan['to']} is gone", provider=PROVIDER, code="RevisionNotFound"
            )
        changed = False
        if not same_template(target["spec"]["template"], deployment["spec"]["template"]):
            if now is not None and now["metadata"]["name"] != plan["from"]:
                raise PermanentError(
                    f"{apps.where}: runs {now['metadata']['name']}, neither {plan['from']} nor {plan['to']}: someone "
                    "else changed it; not rolled back",
                    provider=PROVIDER,
                    code="ChangedMeanwhile",
                )
            apps.patch(undo_patch(deployment, target))
            changed = True
        done, what = progress(deployment := apps.deployment())
        while not done:
            try:
                ctx.sleep(inputs.interval)
            except StepTimeout:
                raise StepTimeout(f"{apps.where}: rollout not finished when the step's time ran out ({what})") from None
            done, what = progress(deployment := apps.deployment())
        return {
            "namespace": inputs.namespace,
            "name": inputs.name,
            "previous_revision": plan["from_revision"],
            "to_revision": plan["to_revision"],
            "revision": revision(deployment),
            "replica_set": plan["to"],
            "previous_replica_set": plan["from"],
            "images": images(deployment),
            "changed": changed,
            "status": what,
            "summary": f"kubernetes {inputs.namespace}/{inputs.name}: revision {plan['from_revision']} -> "
            f"{revision(deployment)} (the template of revision {plan['to_revision']}: {', '.join(images(deployment))})",
        }


def status(ctx: ActionContext, inputs: KubeInputs) -> dict[str, Any]:
    """exists, current revision, images, whether that revision is a scaler rollback, rollout state."""
    with Apps(ctx, inputs) as apps:
        try:
            deployment = apps.deployment()
        except PermanentError as e:
            if e.code == "NotFound":
                return {
                    "exists": False,
                    "summary": f"{apps.where} (not found)",
                    "current": None,
                    "rolled_back": False,
                    "rollout": None,
                }
            raise
        owned = apps.replica_sets(deployment)
        try:
            _, what = progress(deployment)
        except PermanentError as e:
            what = str(e)
        return {
            "exists": True,
            "summary": f"kubernetes {inputs.namespace}/{inputs.name} at revision {revision(deployment)} "
            f"({', '.join(images(deployment))})",
            "current": revision(deployment),
            "images": images(deployment),
            "rolled_back": rolled_back(deployment, owned),
            "rollout": what,
        }
