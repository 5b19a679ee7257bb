"""The embedded default run: a bundled real trace and the bundled web policy, so `scaler simulate` needs nothing."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
DEFAULT_POLICY = DATA / "web.yaml"
DEFAULT_TRACE = DATA / "ec2_cpu_utilization_5f5533.csv"
DEFAULT_METRIC = "cpu"
