"""The embedded default run: a bundled real trace and the bundled web policy, so `scaler simulate` needs nothing."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
DEFAULT_POLICY = DATA / "web.yaml"
DEFAULT_TRACE = DATA / "ec2_cpu_utilization_5f5533.csv"
DEFAULT_METRIC = "cpu"
# Read as the CPU % of 13 replicas, the trace's 99th percentile (53 %) is 7 replicas of work: 10 replicas at
# 70 %, the web policy's ceiling. The same rule scales every trace in benchmarks/quality.py.
DEFAULT_RECORDED_REPLICAS = 13.0
