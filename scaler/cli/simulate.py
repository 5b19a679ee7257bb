"""`scaler simulate`: replay recorded metrics closed-loop through policies; report cost, SLO and churn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from scaler.cli.common import err, friendly, out
from scaler.errors import ScalerError
from scaler.yamlio import problems_from


@friendly
def simulate(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="POLICY... METRICS: one or more policies, then recorded metrics (CSV, Parquet, Arrow, Prometheus "
             "JSON, or a directory). Without arguments: the bundled web policy on a bundled real trace.")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Write timeline.csv (or .parquet), summary.json, report.png")] = None,
    fmt: Annotated[str, typer.Option("--format", help="The timeline's format: csv, parquet, or auto (CSV, or "
                                                      "Parquet past a million rows)")] = "auto",
    compare: Annotated[list[str] | None, typer.Option(
        help="Also run 'hpa' (the HPA manifest users write for the first policy's workload: its bounds and CPU "
             "target, no behavior section, so Kubernetes' legacy path), 'hpa-v2' (the same with HPA's v2 "
             "behavior defaults written out), or another policy file")] = None,
    slo: Annotated[str | None, typer.Option(
        help="What counts as a violation for every policy, e.g. 'latency=300ms,error_rate=0.01,utilization=90' "
             "[default: the first policy's slo]")] = None,
    sweep_hpa: Annotated[bool, typer.Option(
        "--sweep-hpa", help="Also run the HPA baseline at CPU targets 30-95 % and report each policy's SLO "
                            "violations against HPA's at equal replica-hours")] = False,
    sample_timing: Annotated[str, typer.Option(
        help="Coarse samples between ticks: hold (each until the next) or interpolate")] = "hold",
    metric: Annotated[str | None, typer.Option(help="Name for the value column of a timestamp,value CSV")] = None,
    target_label: Annotated[str | None, typer.Option(help="Prometheus label naming targets")] = None,
    load: Annotated[str | None, typer.Option(help="Recorded metric that drives demand")] = None,
    capacity: Annotated[float | None, typer.Option(
        help="The recording is a count: demand one replica serves per sample")] = None,
    recorded_replicas: Annotated[float | None, typer.Option(
        help="Replicas serving when a CPU recording was made [default: 4]")] = None,
    startup_delay: Annotated[str, typer.Option(help="Replica start-up time")] = "60s",
    lag: Annotated[str, typer.Option(help="How late the controller sees metrics")] = "30s",
    service_time: Annotated[str, typer.Option(help="Mean request time on an idle replica")] = "20ms",
    explain: Annotated[bool, typer.Option("--explain", help="Print the reasons for each scale action")] = False,
    explain_all: Annotated[bool, typer.Option(
        "--explain-all", help="With --explain: every tick, not only scale actions")] = False,
):
    """Replay recorded metrics closed-loop through policies and report cost, SLO violations and churn."""
    from scaler import defaults
    from scaler.policy.load import load_policy
    from scaler.progress import Bars
    from scaler.recordings.load import load_recording
    from scaler.simulate.baseline import hpa_baseline
    from scaler.simulate.judge import describe_slo, parse_slo
    from scaler.simulate.output import replay_to
    from scaler.simulate.report import totals, write_rest
    from scaler.simulate.world import World, busy_scale
    from scaler.units import parse_duration

    embedded = not paths
    if embedded:
        paths = [defaults.DEFAULT_POLICY, defaults.DEFAULT_TRACE]
        metric = metric or defaults.DEFAULT_METRIC
        compare = compare or ["hpa"]
        sweep_hpa = True  # the fair reading: against HPA's own cost/violation curve, at equal cost
        out.print(f"No arguments: simulating the bundled policy [bold]{paths[0].name}[/bold] on the bundled "
                  f"trace [bold]{paths[1].name}[/bold] (NAB, MIT licence), compared with an HPA baseline.")
    if len(paths) < 2:
        raise ScalerError("simulate needs at least one POLICY and then METRICS")
    try:
        world = World(startup_delay=parse_duration(startup_delay), lag=parse_duration(lag),
                      service_time=parse_duration(service_time), recorded_replicas=recorded_replicas or 4.0,
                      capacity=capacity, load=load, sample_timing=sample_timing,
                      slo=parse_slo(slo) if slo is not None else None)
    except ValidationError as e:
        options = {"startup_delay": "--startup-delay", "lag": "--lag", "service_time": "--service-time",
                   "recorded_replicas": "--recorded-replicas", "capacity": "--capacity", "load": "--load",
                   "sample_timing": "--sample-timing"}
        raise ScalerError("invalid model option: " + "; ".join(
            f"{options.get(p.where, p.where)}: {p.what}" for p in problems_from(e))) from None
    except ValueError as e:
        raise ScalerError(f"invalid model option: {e}") from None
    policies = [load_policy(p) for p in paths[:-1]]
    for c in compare or []:
        policies.append(hpa_baseline(policies[0], v2_behavior=c == "hpa-v2") if c in ("hpa", "hpa-v2")
                        else load_policy(c))
    # One SLO judges every policy of the run: --slo, else the first policy's.
    world = world.model_copy(update={"slo": world.slo or policies[0].slo})
    if fmt not in ("auto", "csv", "parquet"):
        raise ScalerError(f"--format {fmt!r}: expected csv, parquet or auto")
    bars = Bars(err)  # shown on a terminal once the run has taken more than a second
    rec = load_recording(paths[-1], metric=metric, target_label=target_label,
                         progress=bars.step(f"reading {paths[-1].name}"))
    if embedded and recorded_replicas is None:
        # The bundled trace scaled like every trace in the quality benchmark: its p99 is 7 replicas of work.
        world = world.model_copy(update=busy_scale(rec.metrics[metric]))
        out.print(f"(the trace is read as the CPU of {world.recorded_replicas:.1f} replicas)", highlight=False)

    from scaler.simulate.replay import warm

    with err.status("preparing the compiled decision path (the first run after installing compiles it: "
                    "about half a minute)", spinner="dots"):
        warm()

    with bars:
        # with --out the timeline is written a block of targets at a time as it is replayed
        run, timeline = replay_to(out_dir, fmt, policies, rec, world, detail=explain, bars=bars)
    results = run.results

    if explain:
        _print_explain(results, every_tick=explain_all)
    table = Table(title=f"{escape(Path(rec.source).name)}: {len(rec.targets)} target(s), "
                        f"{(results[0].times[-1] - results[0].times[0]) / 86400:.1f} days")
    for col in ("policy", "algorithm", "replica-hours", "SLO violated", "scale ups", "scale downs", "peak"):
        table.add_column(col, justify="left" if col in ("policy", "algorithm") else "right")
    for r in results:
        t = totals(r)
        table.add_row(r.policy.name, r.policy.algorithm, f"{t['replica_hours']:.1f}",
                      f"{t['slo_violation_seconds'] / 3600:.2f} h", str(t["scale_ups"]), str(t["scale_downs"]),
                      str(t["peak_replicas"]))
    out.print(table)
    out.print(f"SLO for every policy: {describe_slo(world.slo)}"
              + ("" if slo is not None else f" (from {policies[0].name})"), highlight=False, markup=False)
    for note in results[0].notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    if sweep_hpa:
        _print_sweep(policies[0], rec, world, results)
    if out_dir is not None:
        with err.status("writing summary.json and drawing report.png", spinner="dots"):
            written = write_rest(run, out_dir, timeline, source=str(rec.source))
        out.print("wrote " + ", ".join(str(p) for p in written), highlight=False, markup=False)


def _print_sweep(first, rec, world, results) -> None:
    from scaler.simulate.judge import Point, hpa_curve, judge

    with err.status("running the HPA baseline at each CPU target", spinner="dots"):
        curve = hpa_curve(first, rec, world)
    table = Table(title=f"at HPA's equal cost (HPA at CPU targets {min(curve.targets):g}-{max(curve.targets):g} %)")
    for col in ("policy", "replica-hours", "SLO violated", "HPA at equal cost", "ratio"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        v = judge(Point.of(r), curve)
        note = "" if v.inside else " (outside HPA's range)"
        table.add_row(r.policy.name, f"{v.point.replica_hours:.1f}", f"{v.point.violation_hours:.2f} h",
                      f"{v.hpa_at_equal_cost:.2f} h{note}", f"{v.ratio:.2f}")
    out.print(table)
    curve_text = "; ".join(f"{t:g} %: {p.replica_hours:.0f} replica-h, {p.violation_hours:.2f} h"
                           for t, p in zip(curve.targets, curve.points, strict=True))
    out.print(f"HPA's curve: {curve_text}", highlight=False, markup=False)


def _print_explain(results, *, every_tick: bool) -> None:
    from datetime import UTC, datetime

    from scaler.simulate.report import explanations

    for r in results:
        shown = None
        for target, when, line in explanations(r, every_tick=every_tick):
            if target != shown:
                out.print(f"[bold]{escape(r.policy.name)} / {escape(target)}[/bold]")
                shown = target
            stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.print(f"{stamp}  {line}", highlight=False, markup=False)
