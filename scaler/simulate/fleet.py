"""report.png's panels: one target's run over the whole span and on its worst day, and a fleet's distributions.

A week at 15 s is 40,320 ticks on a plot 1,300 pixels wide: drawn tick by tick, requested and ready replicas
overlap to one line and a 15 s breach is a tenth of a pixel. So a long run is drawn per bin (about one pixel):
demand as its min-max band, requested replicas as the bin's highest, ready as its lowest (so time spent waiting
for replicas to start shows as a gap between them), and any breach in a bin as a solid mark along the bottom.
Beside it, the worst stretch (the two hours with the most breached ticks) is drawn tick by tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from scaler.simulate.replay import Result

BINS = 1200
"""Bins across a whole-span panel: about one per pixel at the report's size."""
ZOOM = 480
"""Ticks drawn one by one beside a long run: 2 hours at 15 s (a narrow panel holds about 450 pixels)."""
WORST = 10
"""Targets named in a fleet's worst-targets panel."""

DEMAND, REQUESTED, READY, BREACH = "0.55", "tab:blue", "tab:green", "tab:red"


def figures(r: Result, j: int) -> str:
    """'412 replica-h, SLO violated 1.25 h, 30 up / 29 down' for target j of `r`."""
    return (f"{r.replica_hours[j]:.0f} replica-h, SLO violated {r.slo_violation_seconds[j] / 3600:.2f} h, "
            f"{int(r.scale_ups[j])} up / {int(r.scale_downs[j])} down")


def worst_stretch(r: Result) -> slice | None:
    """The ZOOM ticks (at most a quarter of the run) of one-target `r` with the most breached ticks, the
    busiest when none breached; None when the whole run is drawn tick by tick anyway."""
    tl = r.timeline
    assert tl is not None
    ticks = len(r.times)
    if ticks <= 2 * BINS:
        return None
    window = min(ZOOM, ticks // 4)
    breach = np.concatenate([[0], np.cumsum(tl.slo_ok[:, 0] == 0)])
    counts = breach[window:] - breach[:-window]
    if counts.max() > 0:
        start = int(np.argmax(counts))
    else:
        load = np.concatenate([[0.0], np.cumsum(np.nan_to_num(tl.demand[:, 0]))])
        start = int(np.argmax(load[window:] - load[:-window]))
    return slice(start, start + window)


def draw_track(ax, r: Result, *, title: str, span: slice | None = None, mark: slice | None = None,
               legend: bool = True) -> None:
    """One target's demand, requested and ready replicas and breaches on `ax` (hours since the run's start);
    `span` narrows it to some ticks, `mark` flags ticks drawn elsewhere (the worst stretch)."""
    tl = r.timeline
    assert tl is not None
    span = span or slice(0, len(r.times))
    hours = (r.times[span] - r.times[0]) / 3600.0
    step = r.policy.interval / 3600.0
    demand, desired, ready = tl.demand[span, 0], tl.desired[span, 0], tl.ready[span, 0]
    breach = tl.slo_ok[span, 0] == 0
    edges = np.append(hours, hours[-1] + step) if hours.size else np.array([0.0, step])
    top = float(np.nanmax(np.r_[desired, ready, np.nan_to_num(demand), 1.0]))
    if hours.size > 2 * BINS:
        starts = np.linspace(0, hours.size, BINS + 1).round().astype(int)[:-1]
        bins = edges[np.r_[starts, hours.size]]
        minutes = (bins[1] - bins[0]) * 60
        with np.errstate(invalid="ignore"):
            lo, hi = np.fmin.reduceat(demand, starts), np.fmax.reduceat(demand, starts)
        counts = np.diff(np.r_[starts, hours.size])
        _band(ax, bins, lo, hi, color=DEMAND, alpha=0.45, label=f"demand (band: lowest to highest per "
                                                                 f"{minutes:.0f} min)")
        with np.errstate(invalid="ignore"):  # the mean too: held samples make many a band zero wide
            mean = np.add.reduceat(np.nan_to_num(demand), starts) / np.add.reduceat(~np.isnan(demand), starts)
        ax.stairs(mean, bins, baseline=None, color="0.45", lw=0.6)
        _band(ax, bins, np.minimum.reduceat(desired, starts), np.maximum.reduceat(desired, starts),
              color=REQUESTED, alpha=0.22, label="requested replicas (lowest to highest)")
        # requested wide and ready thin on top: where they agree a green line edged in blue, where replicas
        # are still starting the two part
        ax.stairs(np.add.reduceat(desired, starts) / counts, bins, baseline=None, color=REQUESTED, lw=2.6,
                  alpha=0.75, label="requested (mean)")
        ax.stairs(np.add.reduceat(ready, starts) / counts, bins, baseline=None, color=READY, lw=0.9,
                  label="ready (mean)")
        _breaches(ax, bins, np.add.reduceat(breach.astype(np.int64), starts) > 0, band=False)
    else:
        ax.plot(hours, demand, color="0.4", lw=0.8, label="demand (replica-equivalents)")
        ax.stairs(desired, edges, baseline=None, color=REQUESTED, lw=2.6, alpha=0.75, label="requested replicas")
        ax.stairs(ready, edges, baseline=None, color=READY, lw=0.9, label="ready replicas")
        _breaches(ax, edges, breach, band=True)
    if mark is not None:
        m0 = (r.times[mark.start] - r.times[0]) / 3600.0
        ax.axvspan(m0, m0 + (mark.stop - mark.start) * step, ymin=0.955, ymax=1.0, color="goldenrod", alpha=0.9,
                   lw=0, label="drawn on the right")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, top * 1.45)  # room for the legend above the lines
    ax.set_title(title, fontsize=9.5, loc="left")
    ax.set_ylabel("replicas")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="upper left", fontsize=7, ncols=3, framealpha=0.85)


def _band(ax, edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, **style) -> None:
    """A band from `lo` to `hi` over each bin (edges has one more entry); a bin of no data (NaN) is left empty."""
    lo, hi = np.append(lo, lo[-1]), np.append(hi, hi[-1])
    ax.fill_between(edges, lo, hi, step="post", lw=0, where=np.isfinite(lo) & np.isfinite(hi), **style)


def _breaches(ax, edges: np.ndarray, hit: np.ndarray, *, band: bool) -> None:
    """Breached ticks (or bins) as a solid strip along the bottom, so that even one tick in a week shows; with
    `band`, also a light band over the panel."""
    if not hit.any():
        return
    where = np.flatnonzero(hit)
    # runs of consecutive breached bins, each drawn once
    breaks = np.flatnonzero(np.diff(where) > 1)
    first = np.r_[where[0], where[breaks + 1]]
    last = np.r_[where[breaks], where[-1]]
    for k, (a, b) in enumerate(zip(first.tolist(), last.tolist(), strict=True)):
        if band:
            ax.axvspan(edges[a], edges[b + 1], color=BREACH, alpha=0.12, lw=0)
        ax.axvspan(edges[a], edges[b + 1], ymin=0, ymax=0.05, color=BREACH, alpha=0.95, lw=0,
                   label="SLO breached" if k == 0 else None)


def stretch_title(r: Result, stretch: slice) -> str:
    """'worst 2 h, SLO violated 0.31 h / from 2014-02-18 18:48 UTC, tick by tick'."""
    start = datetime.fromtimestamp(float(r.times[stretch.start]), UTC).strftime("%Y-%m-%d %H:%M")
    tl = r.timeline
    assert tl is not None
    breached = int(np.count_nonzero(tl.slo_ok[stretch, 0] == 0)) * r.policy.interval / 3600
    hours = (stretch.stop - stretch.start) * r.policy.interval / 3600
    what = f"worst {hours:g} h, SLO violated {breached:.2f} h" if breached else f"busiest {hours:g} h (no breach)"
    return f"{what}\nfrom {start} UTC, tick by tick"


def draw_fleet(fig, grid, results: Sequence[Result]) -> None:
    """The fleet panels in the top three cells of `grid`: violation and cost per target (one box per policy,
    every target a dot) and the worst targets named, with their figures under each policy."""
    names = [f"{r.policy.name}" for r in results]
    colors = [f"C{i}" for i in range(len(results))]
    rng = np.random.default_rng(0)
    top = grid[0, :].subgridspec(1, 2, wspace=0.12)
    for col, (what, get) in enumerate((("SLO violated per target (hours)", lambda r: r.slo_violation_seconds / 3600),
                                       ("replica-hours per target", lambda r: r.replica_hours))):
        ax = fig.add_subplot(top[0, col])
        data = [np.asarray(get(r), dtype=float) for r in results]
        ax.boxplot(data, widths=0.5, showfliers=False, medianprops={"color": "black"}, **_horizontal())
        ax.set_yticks(np.arange(1, len(names) + 1), names)
        for i, d in enumerate(data):
            ax.scatter(d, i + 1 + rng.uniform(-0.18, 0.18, d.size), s=6, alpha=0.5, color=colors[i], lw=0)
        ax.set_title(f"{what}: {len(results[0].targets):,} targets", fontsize=9.5, loc="left")
        ax.grid(alpha=0.3, axis="x")
    ax = fig.add_subplot(grid[1, :])
    worst = _worst(results)
    shown = worst[::-1]
    height = 0.8 / len(results)
    for i, r in enumerate(results):
        index = {t: j for j, t in enumerate(r.targets)}
        values = [r.slo_violation_seconds[index[t]] / 3600 for t in shown]
        ax.barh(np.arange(len(shown)) + (i - (len(results) - 1) / 2) * height, values, height=height,
                color=colors[i], label=names[i])
    ax.set_yticks(np.arange(len(shown)), [_short(t) for t in shown], fontsize=8)
    ax.set_xlabel("SLO violated (hours)")
    ax.set_title(f"the {len(shown)} targets with the most SLO violation (under any policy)", fontsize=9.5, loc="left")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, axis="x")


def _horizontal() -> dict[str, object]:
    """boxplot's keyword for horizontal boxes: `orientation` from matplotlib 3.10, `vert` before it."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _worst(results: Sequence[Result]) -> list[str]:
    """The WORST target names with the most violation under any policy (then the most replica-hours)."""
    targets = results[0].targets
    violation = np.max([r.slo_violation_seconds for r in results], axis=0)
    cost = np.max([r.replica_hours for r in results], axis=0)
    order = np.lexsort((-cost, -violation))[:WORST]
    return [targets[j] for j in order.tolist()]


def worst_target(r: Result) -> int:
    """Index of `r`'s target with the most violation (then the most replica-hours)."""
    return int(np.lexsort((-r.replica_hours, -r.slo_violation_seconds))[0])


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
