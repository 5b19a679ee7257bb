"""Quality: the shipped web policy against the HPA baseline on every recorded trace, same world, same run.

Prints a Markdown table (the one in README.md): replica-hours and SLO-violation time per trace and policy,
and whether the web policy has less SLO-violation time at equal or lower replica-hours.

    python benchmarks/quality.py [--traces DIR] [--policy policies/web.yaml] [--days N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import simulate
from scaler.simulate.world import World, busy_scale

ROOT = Path(__file__).resolve().parents[1]

TRACES = [
    "ec2_cpu_utilization_5f5533.csv",
    "ec2_cpu_utilization_825cc2.csv",
    "rds_cpu_utilization_cc0c53.csv",
    "grok_asg_anomaly.csv",
    "cpu_utilization_asg_misconfiguration.csv",
    "elb_request_count_8c0756.csv",
    "nyc_taxi.csv",
]
COUNTS = {"elb_request_count_8c0756.csv", "nyc_taxi.csv"}


def world_for(name: str, rec) -> World:
    """Every trace scaled by the same rule (scaler.simulate.world.busy_scale): its p99 load is 7 replicas of work."""
    return World(**busy_scale(rec.metrics["load"], count=name in COUNTS))


def cut(rec, days: float | None):
    if not days:
        return rec
    from dataclasses import replace

    keep = rec.times < rec.times[0] + days * 86400
    return replace(rec, times=rec.times[keep], metrics={k: v[:, keep] for k, v in rec.metrics.items()},
                   replicas=None if rec.replicas is None else rec.replicas[:, keep])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "web.yaml")
    ap.add_argument("--days", type=float, default=None, help="only the first N days of each trace")
    args = ap.parse_args()
    web = load_policy(args.policy)
    hpa = hpa_baseline(web)
    print(f"| trace | {web.name} replica-h | HPA replica-h | {web.name} SLO violated | HPA SLO violated | better |")
    print("|---|---:|---:|---:|---:|:---:|")
    wins = 0
    for name in TRACES:
        rec = cut(load_recording(args.traces / name, metric="load"), args.days)
        world = world_for(name, rec)
        a, b = (simulate(p, rec, world, record=False) for p in (web, hpa))
        ah, bh = float(np.sum(a.replica_hours)), float(np.sum(b.replica_hours))
        av, bv = float(np.sum(a.slo_violation_seconds)) / 3600, float(np.sum(b.slo_violation_seconds)) / 3600
        ok = av < bv and ah <= bh
        wins += ok
        print(f"| {name} | {ah:.0f} | {bh:.0f} | {av:.2f} h | {bv:.2f} h | {'yes' if ok else 'no'} |", flush=True)
    print(f"\n{wins}/{len(TRACES)} traces: less SLO-violation time at equal or lower replica-hours")


if __name__ == "__main__":
    main()
