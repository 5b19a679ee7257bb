"""Simulation speed and memory: 1, 100 and 1,000 targets x 1 week at 15 s, one line each.

Each size runs in its own process so peak RSS is that size's own (plus, when the targets are split across
processes, the worker's peak). Demand is the bundled real CPU trace, shifted and scaled differently for every
target. Target: 1,000 targets in <= 4 s (>= 10 M target-ticks/s), peak RSS <= 2 GB.

    python benchmarks/bench_simulate.py [--policy policies/web.yaml] [--targets 1 100 1000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout, whatever `scaler` is installed from
WEEK = 7 * 86400


def one(policy_path: str, targets: int, workers: int | None) -> dict:
    from scaler import defaults
    from scaler.policy.load import load_policy
    from scaler.recordings.load import load_recording, resample
    from scaler.simulate.replay import Demand, run
    from scaler.simulate.world import World

    policy = load_policy(policy_path)
    rec = load_recording(defaults.DEFAULT_TRACE, metric="cpu")
    _, series, _ = resample(rec, interval=policy.interval)
    base = series["cpu"][0]
    ticks = int(WEEK / policy.interval)
    rng = np.random.default_rng(7)
    shifts = rng.integers(0, len(base) - ticks, size=targets)
    scale = rng.uniform(0.5, 3.0, size=targets)[:, None]
    # Built in place: the benchmark's own arrays should not be what its peak memory measures.
    load = base[shifts[:, None] + np.arange(ticks)[None, :]]
    np.nan_to_num(load, copy=False)
    load *= 4.0 / 100.0 * scale
    times = 1_700_000_000.0 + np.arange(ticks) * policy.interval
    demand = Demand(times=times, load=load, gauges={}, initial=np.full(targets, 4.0), load_metric="cpu",
                    sample_step=300.0)
    # The first call in a process compiles the decision path, or loads it from numba's cache: timed apart.
    start = time.perf_counter()
    few = Demand(times=times[:8], load=load[:1, :8], gauges={}, initial=np.full(1, 4.0), load_metric="cpu",
                 sample_step=300.0)
    run(policy, few, World(), targets=("warm",), record=False, workers=1)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    result = run(policy, demand, World(), targets=tuple(f"t{i}" for i in range(targets)), record=False,
                 workers=workers)
    secs = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"targets": targets, "ticks": ticks, "seconds": secs, "rate": targets * ticks / secs / 1e6,
            "peak_rss_mb": peak_mb, "warm_up": warm, "worker_rss_mb": worker_mb,
            "replica_hours": float(result.replica_hours.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=str(ROOT / "policies" / "web.yaml"))
    ap.add_argument("--targets", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--workers", type=int, help="processes to split the targets across (default: automatic)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.policy, args.child, args.workers)))
        return
    print(f"policy={Path(args.policy).name}")
    warm = []
    for n in args.targets:
        cmd = [sys.executable, __file__, "--policy", args.policy, "--child", str(n)]
        cmd += ["--workers", str(args.workers)] if args.workers else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        worker = f" (+{r['worker_rss_mb']:.0f} MB worker)" if r["worker_rss_mb"] else ""
        print(f"targets={r['targets']} ticks={r['ticks']} {r['seconds']:.1f} s "
              f"{r['rate']:.1f} M target-ticks/s peak-rss={r['peak_rss_mb']:.0f} MB{worker}", flush=True)
        warm.append(r["warm_up"])
    span = f"{min(warm):.1f}" if f"{min(warm):.1f}" == f"{max(warm):.1f}" else f"{min(warm):.1f}-{max(warm):.1f}"
    print(f"(not counted above: each process's first call, which compiles the decision path or loads it from "
          f"numba's cache: {span} s)")


if __name__ == "__main__":
    main()
