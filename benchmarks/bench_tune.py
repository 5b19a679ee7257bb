"""`scaler tune` on the two 15 s traces, and the speed of a 200-candidate sweep.

Quality: for each 15 s trace (read as demand at a per-replica capacity of p99 / 7, scaler.simulate.world.busy_scale),
runs `scaler tune policies/web.yaml TRACE --capacity C` exactly as a user would: the first half of the trace
chooses, the second half checks. Prints its grid and table, then says plainly whether the tuned policy is at or
below HPA's cost/violation curve on the second half.

Speed: 200 candidates side by side on the first half of the NASA trace (one target, 40,320 ticks), in one
process and on the local pool, and 200 candidates x 20 targets (the trace shifted per target), in target-ticks
per second (candidates x targets x ticks / seconds; the first call, which compiles or loads the decision path,
is not counted).

    python benchmarks/bench_tune.py [--traces DIR] [--policy policies/web.yaml] [--skip-speed | --speed-only]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout, whatever `scaler` is installed from

TRACES = ("nasa_http_rps.csv", "twitter_stream_rps.csv")
SPEED_GRID = ["target=0.85,0.92,1,1.08,1.16", "up=0.94,1", "down=1", "down_stabilization=0s,1m,5m,10m,15m",
              "down_cooldown=0s,1m,2m,5m"]  # 5 x 2 x 5 x 4 = 200, the policy as written among them


def quality(policy: Path, trace: Path) -> None:
    from scaler.recordings.load import load_recording
    from scaler.simulate.world import busy_scale

    rec = load_recording(trace)
    capacity = busy_scale(next(iter(rec.metrics.values())), count=True)["capacity"]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "scaler", "tune", str(policy), str(trace), "--capacity", f"{capacity:.6g}",
               "--out", out]
        print(f"$ scaler tune {policy.relative_to(ROOT)} {trace.name} --capacity {capacity:.6g} --out DIR", flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        took = time.perf_counter() - start
        print(done.stdout, end="")
        if done.returncode != 0:
            print(done.stderr, end="")
            raise SystemExit(done.returncode)
        with open(Path(out) / "candidates.csv", newline="") as f:
            table = list(csv.DictReader(f))
    chosen = [r for r in table if r["chosen"] == "1"]
    hpa = next(r for r in table if r["kind"] == "hpa-equivalent")
    print(f"({took:.1f} s including start-up)")
    if chosen and chosen[0]["check_beats_hpa"] == "1":
        c = chosen[0]
        print(f"RESULT {trace.name}: the tuned policy (candidate {c['candidate']}) on the second half: "
              f"{float(c['check_violation_hours']):.2f} h SLO violated at {float(c['check_replica_hours']):.1f} "
              f"replica-h; HPA's curve at that cost {float(c['check_hpa_at_equal_cost']):.2f} h; the HPA-equivalent "
              f"{float(hpa['check_violation_hours']):.2f} h at {float(hpa['check_replica_hours']):.1f} replica-h: "
              "AT OR BELOW HPA's curve")
    else:
        print(f"RESULT {trace.name}: nothing beat HPA on the second half; the tuned policy is the HPA-equivalent "
              f"({float(hpa['check_violation_hours']):.2f} h at {float(hpa['check_replica_hours']):.1f} replica-h, "
              "a point of HPA's own curve)")
    print()


def speed(policy_path: Path, trace: Path) -> None:
    from scaler.policy.load import load_policy
    from scaler.recordings.load import load_recording
    from scaler.simulate.grid import grid, parse_grid
    from scaler.simulate.replay import Demand, demand_for
    from scaler.simulate.sweep import LocalPool, Runner, cpus
    from scaler.simulate.tune import split
    from scaler.simulate.world import World, busy_scale

    policy = load_policy(policy_path)
    g = grid(policy, parse_grid(SPEED_GRID))
    candidates = [c.policy for c in g.candidates]
    rec = load_recording(trace)
    rec = replace(rec, metrics={"cpu": next(iter(rec.metrics.values()))})
    world = World(**busy_scale(rec.metrics["cpu"], count=True), load="cpu", slo=policy.slo)
    early, _ = split(rec, 0.5)
    one = demand_for(policy, early, world)
    ticks = len(one.times)
    rng = np.random.default_rng(7)
    shifts = rng.integers(0, ticks, size=20)
    fleet = Demand(times=one.times, load=np.stack([np.roll(one.load[0], s) for s in shifts]), gauges={},
                   initial=np.full(20, one.initial[0]), load_metric=one.load_metric, sample_step=one.sample_step,
                   absent=one.absent)
    print(f"speed: {len(candidates)} candidates ({g.describe()}), {trace.name} first half: {ticks} ticks at 15 s")
    Runner().figures(candidates[:2], one, world)  # compiles the decision path, or loads it from numba's cache
    for label, runner, demand in (("1 target, one process", Runner(), one),
                                  (f"1 target, {cpus()} local processes", LocalPool(), one),
                                  (f"20 targets, {cpus()} local processes", LocalPool(), fleet)):
        n = demand.load.shape[0]
        start = time.perf_counter()
        runner.figures(candidates, demand, world)
        took = time.perf_counter() - start
        cells = len(candidates) * n * ticks
        print(f"  {label}: {len(candidates)} x {n} columns x {ticks} ticks in {took:.2f} s = "
              f"{cells / took / 1e6:.1f} M target-ticks/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "web.yaml")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true")
    args = ap.parse_args()
    for name in () if args.speed_only else TRACES:
        quality(args.policy.resolve(), args.traces / name)
    if not args.skip_speed:
        speed(args.policy.resolve(), args.traces / TRACES[0])


if __name__ == "__main__":
    main()
