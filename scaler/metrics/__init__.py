"""Metric sources: recorded files now, live Prometheus later."""
