"""Fleet-sized recordings end to end: load, replay two policies, write the timeline, draw the report.

Builds its own inputs (the bundled real CPU trace, shifted and scaled differently for every target, every 15 s
for a week, in long format) and runs `scaler simulate policies/web.yaml <input> --compare hpa --out <dir>` in a
fresh process for each case, printing one line per phase from the command's own timings and the case's peak RSS
(the process and its workers). Targets:

    100 targets x 1 week, CSV in -> Parquet out     <= 10 s end to end, <= 1 GB peak RSS
    100 targets x 1 week, CSV in -> CSV out         <= 30 s end to end
    1,000 targets x 1 week, Parquet in and out      <= 60 s end to end, <= 4 GB peak RSS

    python benchmarks/bench_io.py [--cases csv-parquet csv-csv parquet-1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout, whatever `scaler` is installed from
WEEK = 7 * 86400
STEP = 15
T0 = 1_700_000_000
CASES = {
    # name: (targets, input format, output format, target seconds, target peak GB)
    "csv-parquet": (100, "csv", "parquet", 10, 1.0),
    "csv-csv": (100, "csv", "csv", 30, None),
    "parquet-1000": (1000, "parquet", "parquet", 60, 4.0),
}


def cpu(targets: int) -> np.ndarray:
    """(targets, ticks) CPU % every 15 s for a week: the bundled trace held from its 5-minute samples, each target
    a different stretch of it, scaled, with a little noise."""
    from scaler import defaults
    from scaler.recordings.load import load_recording, resample

    rec = load_recording(defaults.DEFAULT_TRACE, metric=defaults.DEFAULT_METRIC)
    _, series, _ = resample(rec, interval=STEP)
    base = np.nan_to_num(series[defaults.DEFAULT_METRIC][0], nan=float(np.nanmedian(series["cpu"])))
    ticks = WEEK // STEP
    rng = np.random.default_rng(7)
    shifts = rng.integers(0, base.size - ticks, size=targets)
    scale = rng.uniform(0.6, 1.6, size=(targets, 1))
    out = base[shifts[:, None] + np.arange(ticks)[None, :]] * scale
    out += rng.normal(0, 1.5, size=out.shape)
    return np.clip(out, 0, 100).round(2)


def build(directory: Path, targets: int, fmt: str) -> Path:
    """The recording as `fmt` (csv or parquet) in long format: timestamp, target, cpu; rows in time order."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = directory / f"fleet-{targets}.{fmt}"
    if path.exists():
        return path
    values = cpu(targets)
    ticks = values.shape[1]
    names = pa.array([f"svc-{i:04d}" for i in range(targets)])
    table = pa.table({
        "timestamp": pa.array(np.repeat(T0 + STEP * np.arange(ticks, dtype=np.int64), targets)),
        "target": pa.DictionaryArray.from_arrays(pa.array(np.tile(np.arange(targets, dtype=np.int32), ticks)), names),
        "cpu": pa.array(values.T.ravel()),
    })
    if fmt == "csv":
        plain = pa.schema([("timestamp", pa.int64()), ("target", pa.string()), ("cpu", pa.float64())])
        with path.open("wb") as f:
            f.write(b"timestamp,target,cpu\n")
            pcsv.write_csv(table.cast(plain), f, pcsv.WriteOptions(quoting_style="none", include_header=False))
    else:
        pq.write_table(table, path, row_group_size=1 << 20)
    return path


def child(case: str, directory: Path) -> dict:
    """Run `scaler simulate` for `case` in this process, timing the functions it calls for each phase."""
    import scaler.recordings.load as load
    import scaler.simulate.output as output
    import scaler.simulate.replay as replay
    import scaler.simulate.report as report
    from scaler.cli.main import app

    phases: dict[str, float] = {}

    def timed(owner, name: str, phase: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(load, "load_recording", "load")
    timed(replay, "warm", "warm")
    timed(output, "replay", "simulate")  # the name replay_to calls
    timed(output.CsvTimeline, "write", "write")
    timed(output.ParquetTimeline, "write", "write")
    timed(output.CsvTimeline, "close", "write")
    timed(output.ParquetTimeline, "close", "write")
    timed(report, "write_summary", "summary")
    timed(report, "write_plot", "report")
    targets, fmt_in, fmt_out, _, _ = CASES[case]
    data = directory / f"fleet-{targets}.{fmt_in}"
    out = directory / f"out-{case}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        app(["simulate", str(ROOT / "policies" / "web.yaml"), str(data), "--compare", "hpa", "--out", str(out),
             "--format", fmt_out], standalone_mode=False)
    except SystemExit as e:  # typer's exit on an error: the message is on stderr already
        if e.code:
            raise
    # writing happens inside the replay, block by block: simulate is the replay less the writing
    phases["simulate"] -= phases.get("write", 0.0)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"phases": phases, "peak_mb": own / 1024, "worker_mb": workers / 1024,
            "written": {p.name: p.stat().st_size for p in out.iterdir()}}


def run(case: str, directory: Path) -> dict:
    targets, fmt_in, _, _, _ = CASES[case]
    data = build(directory, targets, fmt_in)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the compiled decision path's cache warmed first: the run measures the work, not a first compilation
    subprocess.run([sys.executable, "-c", "from scaler.simulate.replay import warm; warm()"], env=env, check=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", case, "--keep", str(directory)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{case}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"case": case, "targets": targets, "input": data.name, "input_mb": data.stat().st_size / 2**20,
            "seconds": seconds, **r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--keep", type=Path, help="build inputs and write outputs here (and keep them)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = child(args.child, args.keep)
        print(json.dumps(result))
        return
    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench-io-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for case in args.cases:
            build(directory, CASES[case][0], CASES[case][1])  # inputs are not part of the timing
            r = run(case, directory)
            _, _, fmt_out, goal_s, goal_gb = CASES[case]
            phases = " ".join(f"{k}={v:.1f}s" for k, v in r["phases"].items())
            sizes = " ".join(f"{k}={v / 2**20:.0f}MB" for k, v in sorted(r["written"].items()))
            peak = r["peak_mb"] + (r["worker_mb"] if r["worker_mb"] > 0 else 0)
            met = r["seconds"] <= goal_s and (goal_gb is None or peak <= goal_gb * 1024)
            goal = f"<= {goal_s} s" + (f", <= {goal_gb:g} GB" if goal_gb else "")
            workers = f" (+{r['worker_mb']:.0f} MB worker)" if r["worker_mb"] > 0 else ""
            print(f"{case}: {r['targets']} targets x 1 week, {r['input']} ({r['input_mb']:.0f} MB) -> {fmt_out}: "
                  f"{r['seconds']:.1f} s end to end, peak RSS {r['peak_mb']:.0f} MB{workers} (target {goal}: "
                  f"{'met' if met else 'NOT met'})", flush=True)
            print(f"  phases: {phases}; wrote {sizes}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
