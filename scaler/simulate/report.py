"""Simulation outputs: timeline.csv, summary.json, report.png, and the comparison table."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from scaler.decision.explain import Values, explain
from scaler.decision.kernel.tick import Outputs
from scaler.decision.reasons import describe_all
from scaler.simulate.replay import Result

# What spreadsheet software reads as the start of a formula when it opens a CSV file: a target named
# '=HYPERLINK("http://...")' would become a live link. Such a name is written with a leading single quote,
# which shows it as text (OWASP's advice on CSV injection); every other name is written as it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows and never runs: "=1+1" -> "'=1+1"; "web" -> "web"."""
    return "'" + text if text.startswith(FORMULA_START) else text


def write_all(results: Sequence[Result], out: Path, *, source: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [write_timeline(results, out / "timeline.csv"), write_summary(results, out / "summary.json", source=source),
            write_plot(results, out / "report.png")]


def write_timeline(results: Sequence[Result], path: Path) -> Path:
    """One row per (policy, target, tick); metric columns are the union over policies (blank if absent)."""
    names: list[str] = []
    for r in results:
        names += [m.name for m in r.policy.metrics if m.name not in names]
    header = ["policy", "target", "time", "replicas", "ready_replicas", "desired"]
    for n in names:
        header += [n, f"{n}_smoothed"]
    header += ["demand", "slo_ok", "reason"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in results:
            tl = r.timeline
            if tl is None:
                continue
            idx = {m.name: i for i, m in enumerate(r.policy.metrics)}
            reasons = np.array(describe_all(tl.reasons), dtype=object).reshape(tl.reasons.shape)
            for j, target in enumerate(r.targets):
                cols = [np.full(len(r.times), spreadsheet_text(r.policy.name), dtype=object),
                        np.full(len(r.times), spreadsheet_text(target), dtype=object),
                        _fmt(r.times, 0), _fmt(tl.replicas[:, j], 0), _fmt(tl.ready[:, j], 0),
                        _fmt(tl.desired[:, j], 0)]
                for n in names:
                    if n in idx:
                        cols += [_fmt(tl.observed[:, idx[n], j], 6), _fmt(tl.smoothed[:, idx[n], j], 6)]
                    else:
                        cols += [np.full(len(r.times), "", dtype=object)] * 2
                slo = np.where(tl.slo_ok[:, j] < 0, "", np.where(tl.slo_ok[:, j] > 0, "1", "0"))
                cols += [_fmt(tl.demand[:, j], 4), slo, reasons[:, j]]
                w.writerows(zip(*cols, strict=True))
    return path


def _fmt(values: np.ndarray, digits: int) -> np.ndarray:
    """Numbers as text, NaN as an empty cell (no data is not zero)."""
    text = np.char.mod(f"%.{digits}f", np.nan_to_num(values)) if digits else np.char.mod("%d", np.nan_to_num(values))
    if digits:
        text = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    return np.where(np.isnan(values), "", text)


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


def write_plot(results: Sequence[Result], path: Path, *, target: int = 0) -> Path:
    """Demand, requested and ready replicas, and SLO breaches over time: one panel per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.timeline is not None]
    fig, axes = plt.subplots(len(shown), 1, figsize=(12, 3.2 * len(shown)), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], shown, strict=True):
        tl = r.timeline
        hours = (r.times - r.times[0]) / 3600.0
        ax.plot(hours, tl.demand[:, target], color="0.6", lw=0.8, label="demand (replica-equivalents)")
        ax.step(hours, tl.desired[:, target], where="post", color="tab:blue", lw=1.2, label="requested replicas")
        ax.step(hours, tl.ready[:, target], where="post", color="tab:green", lw=0.8, alpha=0.8,
                label="ready replicas")
        breach = tl.slo_ok[:, target] == 0
        if breach.any():
            top = np.nanmax(np.r_[tl.desired[:, target], np.nan_to_num(tl.demand[:, target])]) * 1.05
            ax.fill_between(hours, 0, top, where=breach, color="tab:red", alpha=0.25, step="post", lw=0,
                            label="SLO breached")
        t = totals(r)
        ax.set_title(f"{r.policy.name} ({r.policy.algorithm}) - {r.targets[target]}: "
                     f"{t['replica_hours']:.0f} replica-h, SLO violated {t['slo_violation_seconds'] / 3600:.2f} h, "
                     f"{t['scale_ups']} up / {t['scale_downs']} down", fontsize=10)
        ax.set_ylabel("replicas")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("hours since start")
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
