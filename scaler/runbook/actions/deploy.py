"""One rollback for either platform a runbook parameter names: an ECS service or a Kubernetes Deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from scaler.runbook.actions.base import Action, ActionContext, Inputs
from scaler.runbook.actions.ecs import Rollback as EcsRollback
from scaler.runbook.actions.ecs import RollbackInputs as EcsInputs
from scaler.runbook.actions.ecs import status as ecs_status
from scaler.runbook.actions.kube import KubeInputs, RolloutUndo, UndoInputs
from scaler.runbook.actions.kube import status as kube_status
from scaler.runbook.records import ProviderCall
from scaler.units import PositiveSeconds


class WorkloadInputs(Inputs):
    """An ECS service (cluster, service) or a Kubernetes Deployment (namespace, name and how to reach it)."""

    platform: Literal["ecs", "kubernetes"]
    cluster: str | None = Field(None, description="ecs: the service's cluster")
    service: str | None = Field(None, description="ecs: the service")
    namespace: str = Field("default", min_length=1, description="kubernetes: the Deployment's namespace")
    name: str | None = Field(None, description="kubernetes: the Deployment")
    kubeconfig: str | None = Field(None, description="kubernetes: default $KUBECONFIG or ~/.kube/config")
    context: str | None = Field(None, description="kubernetes: default the kubeconfig's current context")
    in_cluster: bool | None = Field(None, description="kubernetes: default in-cluster when run in a pod")

    @model_validator(mode="after")
    def _named(self) -> WorkloadInputs:
        if self.platform == "ecs" and not (self.cluster and self.service):
            raise ValueError("ecs needs cluster and service")
        if self.platform == "kubernetes" and not self.name:
            raise ValueError("kubernetes needs name (the Deployment)")
        return self

    def kube(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "in_cluster": self.in_cluster,
        }


class RollbackInputs(WorkloadInputs):
    to: str | None = Field(
        None,
        description="ecs: task definition (family:revision or ARN); kubernetes: revision number; "
        "default: the previous one",
    )
    interval: PositiveSeconds = Field(10.0, description="Seconds between looks while the rollout settles")

    @model_validator(mode="after")
    def _to(self) -> RollbackInputs:
        if self.platform == "kubernetes" and self.to is not None and not self.to.isdigit():
            raise ValueError("kubernetes: `to` is a revision number")
        return self


class Rollback(Action[RollbackInputs]):
    name = "deploy.rollback"
    summary = "ecs.rollback or kubernetes.rollout_undo, whichever `platform` names; outputs add `platform`"
    inputs = RollbackInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if inputs.get("platform") == "ecs":
            return EcsRollback().plan(inputs)
        if inputs.get("platform") == "kubernetes":
            return RolloutUndo().plan(inputs)
        return [*EcsRollback().plan(inputs), *RolloutUndo().plan(inputs)]

    def run(self, inputs: RollbackInputs, ctx: ActionContext) -> dict[str, Any]:
        if inputs.platform == "ecs":
            assert inputs.cluster and inputs.service  # checked by the model
            one = EcsInputs(cluster=inputs.cluster, service=inputs.service, to=inputs.to, interval=inputs.interval)
            return {"platform": "ecs", **EcsRollback().run(one, ctx)}
        undo = UndoInputs(**inputs.kube(), to_revision=int(inputs.to) if inputs.to else None, interval=inputs.interval)
        return {"platform": "kubernetes", **RolloutUndo().run(undo, ctx)}


class Status(Action[WorkloadInputs]):
    name = "deploy.status"
    summary = "Read an ECS service or a Deployment (for preconditions): exists, current, rolled_back"
    inputs = WorkloadInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        if inputs.get("platform") == "ecs":
            return EcsRollback().plan(inputs)[:1]
        return RolloutUndo().plan(inputs)[:2]

    def run(self, inputs: WorkloadInputs, ctx: ActionContext) -> dict[str, Any]:
        if inputs.platform == "ecs":
            assert inputs.cluster and inputs.service
            return {"platform": "ecs", **ecs_status(ctx, inputs.cluster, inputs.service)}
        return {"platform": "kubernetes", **kube_status(ctx, KubeInputs(**inputs.kube()))}
