"""Simulation outputs: timeline.csv (or .parquet), summary.json, report.png, and the comparison table."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from scaler.decision.explain import Values, explain
from scaler.decision.kernel.tick import Outputs
from scaler.simulate import fleet
from scaler.simulate.output import FORMULA_START, spreadsheet_text, write_timeline
from scaler.simulate.replay import Result
from scaler.simulate.stream import Replay, one_target

__all__ = ["FORMULA_START", "explanations", "spreadsheet_text", "totals", "write_all", "write_plot",
           "write_rest", "write_summary", "write_timeline"]


def write_rest(run: Replay, out_dir: Path, timeline: Path | None, *, source: str) -> list[Path]:
    """summary.json and report.png of `run` beside its timeline; the paths written, the timeline's first."""
    done = [] if timeline is None else [timeline]
    done.append(write_summary(run.results, out_dir / "summary.json", source=source))
    done.append(write_plot(run.results, out_dir / "report.png", single=run.single))
    return done


def write_all(results: Sequence[Result], out: Path, *, source: str) -> list[Path]:
    """timeline.csv, summary.json and report.png of results replayed with their timelines kept."""
    out.mkdir(parents=True, exist_ok=True)
    return [write_timeline(results, out / "timeline.csv"), write_summary(results, out / "summary.json", source=source),
            write_plot(results, out / "report.png")]


def write_summary(results: Sequence[Result], path: Path, *, source: str) -> Path:
    doc = {"recording": source, "policies": [r.summary() for r in results]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def totals(r: Result) -> dict:
    """Figures summed over targets, for the terminal table."""
    return {
        "replica_hours": float(r.replica_hours.sum()),
        "slo_violation_seconds": float(r.slo_violation_seconds.sum()),
        "scale_ups": int(r.scale_ups.sum()),
        "scale_downs": int(r.scale_downs.sum()),
        "peak_replicas": int(r.peak_replicas.max()) if len(r.peak_replicas) else 0,
    }


def write_plot(
    results: Sequence[Result], path: Path, *, single: Callable[[int, int], Result] | None = None
) -> Path:
    """report.png: for one target, each policy's run over the whole span beside its worst stretch; for a fleet, the
    distribution of violation and cost per target for each policy, the worst targets named, and each policy's
    worst target drawn the same way. Every panel's title gives that target's own figures.

    `single(i, j)` is policy i's replay of target j alone with its timeline (scaler.simulate.stream.Replay.single);
    by default it is cut from each result's recorded timeline.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = single or (lambda i, j: one_target(results[i], j))
    many = len(results[0].targets) > 1
    shown = [(i, fleet.worst_target(r) if many else 0) for i, r in enumerate(results)]
    tracks = [single(i, j) for i, j in shown]
    stretches = [fleet.worst_stretch(t) for t in tracks]
    zoom = any(d is not None for d in stretches)
    top = 2 if many else 0
    fig = plt.figure(figsize=(13 if zoom else 12, 3.3 * (len(results) + top) + (0.5 if many else 0)))
    grid = fig.add_gridspec(len(results) + top, 2 if zoom else 1, width_ratios=[3, 1.15] if zoom else None,
                            height_ratios=[1.15, 1.0] * (top // 2) + [1.0] * len(results))
    if many:
        fleet.draw_fleet(fig, grid, results)
        fig.suptitle(f"{len(results[0].targets):,} targets: " + "; ".join(
            f"{r.policy.name} {totals(r)['replica_hours']:,.0f} replica-h, SLO violated "
            f"{totals(r)['slo_violation_seconds'] / 3600:,.1f} h in all" for r in results), fontsize=10.5)
    first = last = None
    for row, ((i, j), track, stretch) in enumerate(zip(shown, tracks, stretches, strict=True)):
        r = results[i]
        who = f"worst target {track.targets[0]!r}" if many else track.targets[0]
        title = f"{r.policy.name} ({r.policy.algorithm}) - {who}: {fleet.figures(r, j)}"
        ax = fig.add_subplot(grid[top + row, 0], sharex=first)
        first, last = first or ax, ax
        fleet.draw_track(ax, track, title=title, mark=stretch)
        if stretch is not None:
            fleet.draw_track(fig.add_subplot(grid[top + row, 1]), track, title=fleet.stretch_title(track, stretch),
                             span=stretch, legend=False)
    last.set_xlabel("hours since start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def explanations(r: Result, *, every_tick: bool = False) -> Iterator[tuple[str, float, str]]:
    """(target, time, line) for every scale action of a run recorded in detail (every tick with
    `every_tick`), each line told with the numbers that tick's decision used (scaler.decision.explain)."""
    tl = r.timeline
    if tl is None or tl.decisions.asks.shape[0] != len(r.times):
        raise ValueError("explaining a run needs its decisions recorded in detail (simulate(..., detail=True))")
    for j, target in enumerate(r.targets):
        changed = np.ones(len(r.times), dtype=bool) if every_tick else tl.desired[:, j] != tl.replicas[:, j]
        for k in np.flatnonzero(changed):
            row = Outputs(*(a[k] for a in tl.decisions))
            yield target, float(r.times[k]), explain(r.policy, Values.of(row, tl.observed[k], tl.replicas[k], j))
