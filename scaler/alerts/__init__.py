"""Alerts to runbooks: the webhook payload, trigger rules, planning, dispatch, and rules checked against runbooks."""
