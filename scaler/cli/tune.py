"""`scaler tune`: fit a policy to recorded metrics: choose settings on the earlier part, check them on the later."""

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

WORLD_OPTIONS = {"startup_delay": "--startup-delay", "lag": "--lag", "service_time": "--service-time",
                 "recorded_replicas": "--recorded-replicas", "capacity": "--capacity", "load": "--load",
                 "sample_timing": "--sample-timing"}


@friendly
def tune(
    policy_path: Annotated[Path, typer.Argument(metavar="POLICY", help="The policy to tune (YAML or HPA manifest)")],
    recording: Annotated[Path, typer.Argument(metavar="RECORDING",
                                              help="Recorded metrics: CSV, Prometheus JSON, or a directory")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Write tuned.yaml (the chosen policy), candidates.csv and tune.png here")] = None,
    at: Annotated[float, typer.Option(
        "--split", help="Where the recording splits in time: the earlier part chooses, the later part checks")] = 0.5,
    grid_specs: Annotated[list[str] | None, typer.Option(
        "--grid", help="Values for one axis, e.g. 'down_stabilization=0s,5m,15m' or 'target=0.9,1,1.1' "
                       "(repeatable; axes not given keep their defaults, printed)")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="A Dask scheduler to run the candidates on, e.g. tcp://10.0.0.5:8786 (default: local processes)")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local processes without --scheduler (default: one per CPU)")] = None,
    slo: Annotated[str | None, typer.Option(
        help="What counts as a violation, e.g. 'latency=300ms,error_rate=0.01' (default: the policy's slo)")] = None,
    metric: Annotated[str | None, typer.Option(help="Name for the value column of a timestamp,value CSV")] = None,
    target_label: Annotated[str | None, typer.Option(help="Prometheus label naming targets")] = None,
    load: Annotated[str | None, typer.Option(help="Recorded metric that drives demand")] = None,
    capacity: Annotated[float | None, typer.Option(
        help="The recording is a count: demand one replica serves per sample")] = None,
    recorded_replicas: Annotated[float | None, typer.Option(
        help="Replicas serving when a CPU recording was made (default: 4)")] = None,
    sample_timing: Annotated[str, typer.Option(
        help="Coarse samples between ticks: hold (each until the next) or interpolate")] = "hold",
    startup_delay: Annotated[str, typer.Option(help="Replica start-up time")] = "60s",
    lag: Annotated[str, typer.Option(help="How late the controller sees metrics")] = "30s",
    service_time: Annotated[str, typer.Option(help="Mean request time on an idle replica")] = "20ms",
):
    """Fit POLICY to RECORDING: try a grid of settings on the earlier part, pick the one furthest below HPA's
    cost/violation curve (never violating longer than the HPA-equivalent), and keep it only if it beats HPA on
    the later part too (else the HPA-equivalent). Prints the grid and a table; --out writes the chosen policy,
    every candidate and a plot."""
    from scaler.policy.load import load_policy
    from scaler.recordings.load import load_recording
    from scaler.simulate.grid import grid, parse_grid
    from scaler.simulate.judge import describe_slo, parse_slo
    from scaler.simulate.sweep import runner
    from scaler.simulate.tune import split, tune
    from scaler.simulate.tunereport import COLUMNS, curve_text, rows, span, write_all
    from scaler.simulate.world import World
    from scaler.units import parse_duration

    try:
        world = World(startup_delay=parse_duration(startup_delay), lag=parse_duration(lag),
                      service_time=parse_duration(service_time), recorded_replicas=recorded_replicas or 4.0,
                      capacity=capacity, load=load, sample_timing=sample_timing,
                      slo=parse_slo(slo) if slo is not None else None)
    except ValidationError as e:
        raise ScalerError("invalid model option: " + "; ".join(
            f"{WORLD_OPTIONS.get(p.where, p.where)}: {p.what}" for p in problems_from(e))) from None
    except ValueError as e:
        raise ScalerError(f"invalid model option: {e}") from None
    policy = load_policy(policy_path)
    try:
        g = grid(policy, parse_grid(grid_specs or []))
    except ValueError as e:
        raise ScalerError(f"--grid: {e}") from None
    rec = load_recording(recording, metric=metric, target_label=target_label)
    try:
        split(rec, at)
    except ValueError as e:
        raise ScalerError(f"--split: {e}") from None
    world = world.model_copy(update={"slo": world.slo or policy.slo})

    out.print(f"grid: {g.describe()}", highlight=False, markup=False)
    out.print(f"SLO: {describe_slo(world.slo)}" + ("" if slo is not None else f" (from {policy.name})"),
              highlight=False, markup=False)
    from scaler.simulate.replay import warm

    # compiled (or loaded from numba's cache) here, before any local worker starts: they inherit it
    with err.status("preparing the compiled decision path (the first run after installing compiles it: "
                    "about half a minute)", spinner="dots"):
        warm()
    with runner(scheduler, workers=workers) as where, err.status("", spinner="dots") as status:
        t = tune(policy, rec, world, g, where, at=at, progress=lambda text: status.update(escape(text)))

    table = Table(title=f"{escape(recording.name)}: {len(rec.targets)} target(s); choosing part "
                        f"{span(t.choose)}, checking part {span(t.check)}")
    for col in COLUMNS:
        table.add_column(col.strip(), justify="left" if col in ("#", "settings") else "right")
    for row in rows(t):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
    out.print("* chosen. A candidate beats HPA on a part when it violates the SLO no longer than HPA's curve at its "
              "replica-hours and no longer than the HPA-equivalent; of those on the choosing part, the chosen one "
              "saves the most violation time at equal cost, and it must beat HPA on the checking part too.",
              highlight=False, markup=False)
    for part in (t.choose, t.check):
        out.print(f"HPA's curve, {part.name} part: {curve_text(part)}", highlight=False, markup=False)
    out.print(t.summary(), highlight=False, markup=False)
    if out_dir is not None:
        written = write_all(t, out_dir, source=policy_path, recording=str(recording))
        out.print("wrote " + ", ".join(str(p) for p in written), highlight=False, markup=False)
