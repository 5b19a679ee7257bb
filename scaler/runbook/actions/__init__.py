"""The flat registry of runbook actions: a new action is one module plus one line here."""

from __future__ import annotations

from scaler.runbook.actions import control, elb, http, route53, scale, secrets, ssm
from scaler.runbook.actions.base import Action

REGISTRY: dict[str, type[Action]] = {
    "route53.upsert_record": route53.UpsertRecord,
    "route53.failover": route53.Failover,
    "route53.restore_records": route53.RestoreRecords,
    "route53.wait_insync": route53.WaitInsync,
    "route53.get_record": route53.GetRecord,
    "elb.maintenance_rule": elb.MaintenanceRule,
    "ssm.set_parameter": ssm.SetParameter,
    "ssm.get_parameter": ssm.GetParameter,
    "secrets.rotate": secrets.Rotate,
    "secrets.restore": secrets.Restore,
    "asg.set_desired": scale.AsgDesired,
    "ecs.set_desired": scale.EcsDesired,
    "notify.webhook": http.Notify,
    "http.health_check": http.HealthCheck,
    "wait": control.Wait,
    "approve": control.Approve,
}
