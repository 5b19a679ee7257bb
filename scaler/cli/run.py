"""`scaler run` (the control loop) and `scaler status` (the latest decision per target)."""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scaler.errors import ConfigError, ScalerError

log = logging.getLogger(__name__)
out = Console(width=None if sys.stdout.isatty() else 160)


def _fail(text: str, code: int = 2) -> typer.Exit:
    typer.echo(text, err=True)
    return typer.Exit(code)


def run(
    config: Annotated[Path, typer.Argument(help="Run config YAML (Prometheus, policies and targets, state, lease)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Shadow mode: decide and explain, never write")] = False,
    once: Annotated[bool, typer.Option("--once", help="One tick of every policy, print it, exit")] = False,
    listen: Annotated[str | None, typer.Option(help="Override `listen`, e.g. 127.0.0.1:0")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    log_format: Annotated[str, typer.Option(help="json (one object per line) or text")] = "json",
) -> None:
    """Run the control loop: read metrics from Prometheus, decide, scale the targets, until SIGTERM/SIGINT."""
    from scaler import logs
    from scaler.live.config import load_run_config
    from scaler.live.controller import build

    if log_level.lower() not in logs.LEVELS or log_format not in ("json", "text"):
        raise _fail("--log-level: debug, info, warning or error; --log-format: json or text")
    logs.setup(log_level, log_format)
    try:
        # A dry run only looks: a notification channel whose secret is not there is a warning, not a refusal.
        loaded = load_run_config(config, strict=not dry_run)
        for w in loaded.warnings:
            log.warning("%s", w)
        controller = build(loaded, dry_run=dry_run, listen=listen, serve_http=not once)
    except ConfigError as e:
        raise _fail(str(e)) from None
    except ScalerError as e:
        raise _fail(f"scaler run: {e}", 1) from None
    # Everything built so far (modules, config, clients, compiled code) lives as long as the process: move
    # it out of the collector's view, so a full collection (100+ ms over this heap) does not rescan it
    # during a tick.
    gc.freeze()
    with controller:
        loop = controller.loop
        if once:
            reports = [loop.safe_tick(g) for g in loop.groups]
            controller.notifier.flush()
            _print_reports(reports, loaded)
            for skip in controller.skipped:
                out.print(f"{skip.policy}: target {skip.label} ({skip.kind}) left out of this dry run: {skip.why}",
                          highlight=False, markup=False, soft_wrap=True)
            bad = any(r.leader and not r.ok for r in reports)
            raise typer.Exit(1 if bad else 0)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        # One machine-readable line on stdout, so scripts and tests can find a port chosen with :0.
        typer.echo(f"scaler run: listening on {controller.server.url}" + (" (dry run)" if dry_run else ""))
        sys.stdout.flush()
        log.info("control loop started: %d policies, %d targets%s", len(loop.groups),
                 sum(len(g.targets) for g in loop.groups), ", dry run" if dry_run else "")
        loop.run(stop)
        log.info("signal received: the current tick finished; stopping")


def _print_reports(reports, loaded) -> None:
    from scaler.decision.reasons import describe

    for r in reports:
        if not r.leader:
            out.print(f"{r.policy}: not the leader, nothing decided", markup=False)
            continue
        title = f"{r.policy}" + (f" (metric errors: {', '.join(r.query_errors)})" if r.query_errors else "")
        table = Table(title=escape(title))
        for col in ("target", "id", "current", "ready", "desired", "written", "reasons", "error"):
            table.add_column(col)
        for t in r.targets:  # Text cells: a target's label or a provider's message is shown, never styled
            table.add_row(*(Text(c) for c in (t.label, t.id, _s(t.current), _s(t.ready), str(t.desired),
                                              "yes" if t.written else "", describe(t.reasons), t.error or "")))
        out.print(table)
        for name, err in r.query_errors.items():
            out.print(f"  metric {name}: {err}", highlight=False, markup=False)
        if r.save_error is not None:
            out.print(f"  state not saved: {r.save_error}", highlight=False, markup=False)


def _s(x) -> str:
    return "-" if x is None else str(x)


def status(
    config: Annotated[Path, typer.Argument(help="Run config YAML")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored records as JSON")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what a `run --dry-run` decided")] = False,
) -> None:
    """Show the latest decision per target, with the reasons, as the leader last saved them."""
    from datetime import UTC, datetime

    from scaler.aws import AwsClients
    from scaler.decision.explain import Values, explain
    from scaler.decision.reasons import describe
    from scaler.live.config import load_run_config
    from scaler.live.loop import key
    from scaler.store.base import StoreContext

    try:
        # Status reads the saved decisions only: notification channels may be off wherever it runs.
        loaded = load_run_config(config, strict=False)
        for w in loaded.warnings:
            typer.echo(f"warning: {w}", err=True)
        if _never_saved(loaded.state):
            records = dict.fromkeys((p.policy.name for p in loaded.policies), None)
        else:
            aws = AwsClients(loaded.config.aws.settings())
            store = loaded.state.build(StoreContext(aws=aws))
            records = {p.policy.name: store.load(key("decisions", p.policy.name, dry_run=dry_run))
                       for p in loaded.policies}
    except ConfigError as e:
        raise _fail(str(e)) from None
    except ScalerError as e:
        raise _fail(f"scaler status: {e}", 1) from None
    if as_json:
        typer.echo(json.dumps({k: json.loads(v) if v else None for k, v in records.items()}, indent=2))
        return
    for p in loaded.policies:
        blob = records[p.policy.name]
        if blob is None:
            out.print(f"{p.policy.name}: no decision saved yet")
            continue
        rec = json.loads(blob)
        when = datetime.fromtimestamp(rec["time"], UTC).isoformat(timespec="seconds")
        out.print(f"[bold]{escape(p.policy.name)}[/bold] at {when}" + (" (dry run)" if rec["dry_run"] else ""))
        for name, err in rec["query_errors"].items():
            out.print(f"  metric {name} failed: {err}", highlight=False, markup=False)
        for t in rec["targets"]:
            if t.get("steps"):
                line = explain(p.policy, Values.from_json(t["steps"]))
            else:  # saved by a version that kept no step values
                line = f"{t['current']} -> {t['desired']} [{describe(t['reasons']) or 'NO_CHANGE'}]"
            tail = " (written)" if t["written"] else ""
            tail += f" ERROR: {t['error']}" if t["error"] else ""
            out.print(f"  {t['label']} ({t['id']}): {line}{tail}", highlight=False, soft_wrap=True, markup=False)


def _never_saved(state) -> bool:
    """A SQLite state file that does not exist holds no decision; looking must not create it."""
    path = getattr(state, "path", None) if state.kind == "sqlite" else None
    return path is not None and not Path(path).exists()
