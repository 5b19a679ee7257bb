"""The flat registry of runbook actions, `name -> action class`: a new action is one module plus one line here.

It has the shape of the provider registries (scaler.registry), as far as an action allows. A provider's
entry is its config model: `kind` picks it, the model validates the section, and build(ctx) makes a
long-lived object once. An action's entry is its class: the step's `action` picks it (the key is the
class's `name`, as a provider's key is its `kind`), its `inputs` model validates the step's inputs, and
run(inputs, ctx) does the work, once per step with freshly validated inputs, because a step's inputs are
templates resolved only when the step runs and nothing outlives the call.
"""

from __future__ import annotations

from scaler.runbook.actions import control, deploy, ecs, elb, http, kube, rds, route53, scale, secrets, ssm
from scaler.runbook.actions.base import Action

REGISTRY: dict[str, type[Action]] = {
    "route53.upsert_record": route53.UpsertRecord,
    "route53.failover": route53.Failover,
    "route53.restore_records": route53.RestoreRecords,
    "route53.wait_insync": route53.WaitInsync,
    "route53.get_record": route53.GetRecord,
    "route53.invert_health_check": route53.InvertHealthCheck,
    "route53.get_health_check": route53.GetHealthCheck,
    "elb.maintenance_rule": elb.MaintenanceRule,
    "ssm.set_parameter": ssm.SetParameter,
    "ssm.get_parameter": ssm.GetParameter,
    "secrets.rotate": secrets.Rotate,
    "secrets.restore": secrets.Restore,
    "asg.set_desired": scale.AsgDesired,
    "ecs.set_desired": scale.EcsDesired,
    "ecs.rollback": ecs.Rollback,
    "kubernetes.rollout_undo": kube.RolloutUndo,
    "deploy.rollback": deploy.Rollback,
    "deploy.status": deploy.Status,
    "rds.restore_point_in_time": rds.RestorePointInTime,
    "rds.describe": rds.Describe,
    "rds.verify": rds.Verify,
    "rds.point_app": rds.PointApp,
    "rds.point_app_back": rds.PointAppBack,
    "notify.webhook": http.Notify,
    "http.health_check": http.HealthCheck,
    "wait": control.Wait,
    "approve": control.Approve,
}
