"""`scaler runbook ...`: validate, list, plan, run, approve, status and resume runbooks from the shell."""

from __future__ import annotations

import functools
import getpass
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scaler import logs
from scaler.aws import AwsSettings
from scaler.cli.common import error, plural, say
from scaler.errors import ConfigError, ScalerError
from scaler.runbook.journal import default_state_dir
from scaler.runbook.model import load, load_dir
from scaler.runbook.records import Plan, RunRecord, Trigger
from scaler.runbook.service import RunbookService
from scaler.secrets import is_reference

app = typer.Typer(
    help="Disaster-recovery runbooks: validate, plan, run, approve, resume, and inspect runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

# Exit codes: 0 done (or waiting for approval, or planned), 1 the run failed, 2 bad input / refused.
FAILED = {"failed", "rolled_back", "refused"}

Runbooks = Annotated[Path, typer.Option("--runbooks", help="Directory of runbook YAML files")]
JournalOpt = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        help="SQLite journal (default: $SCALER_STATE_DIR/journal.db or ~/.local/state/scaler/journal.db)",
    ),
]
AuditOpt = Annotated[Path | None, typer.Option("--audit", help="Audit JSON lines (default: next to the journal)")]
Endpoint = Annotated[str | None, typer.Option("--endpoint-url", help="Send every AWS call here (e.g. a moto server)")]
Region = Annotated[str, typer.Option("--region", help="Default AWS region")]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="Parameter as key=value; repeatable")]


def friendly(fn: F) -> F:
    """Every error becomes one clear message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ScalerError as e:
            error(str(e), err)
            raise typer.Exit(2) from None
        except Exception as e:  # a bug still gets one line, not a stack dump in an incident
            error(f"unexpected {type(e).__name__}: {e}", err)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def service(
    runbooks: Path,
    journal: Path | None,
    audit: Path | None,
    endpoint_url: str | None,
    region: str,
    *,
    lazy: bool = False,
) -> RunbookService:
    journal = journal or default_state_dir() / "journal.db"
    return RunbookService(
        runbooks_dir=runbooks,
        journal_path=journal,
        audit_path=audit or journal.with_name("audit.jsonl"),
        aws=AwsSettings(region=region, endpoint_url=endpoint_url),
        lazy=lazy,
    )


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut at a word boundary with '…' when longer than `width`."""
    words = " ".join(text.split())
    if len(words) <= width:
        return words
    cut = words[: width - 1]
    if " " in cut and words[width - 1] != " ":
        cut = cut.rsplit(" ", 1)[0]  # a word that does not fit goes whole
    return cut.rstrip(" ,.;:-") + "…"


def login_name() -> str:
    """Who is at the keyboard, for the audit trail; containers without a passwd entry still get a name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def parse_params(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--param", f"expected key=value, got {key.strip() or item!r}")
        if key.strip() in params:
            raise ConfigError("--param", f"{key.strip()} given twice")
        params[key.strip()] = value
    return params


def warn_secrets_by_value(svc: RunbookService, name: str, params: dict[str, str]) -> None:
    """A secret given as `-p name=value` works, but every local user can read it in the process list: say so
    (on stderr, so the output stays clean) and name the safe forms."""
    _, rb = svc.runbook(name)
    for key, value in params.items():
        spec = rb.parameters.get(key)
        if spec is not None and spec.secret and not is_reference(value):
            say(err, "warning:", "yellow",
                f"secret parameter {key} is given by value on the command line, where other users can read it "
                f"in the process list; give it as {key}=env:VARIABLE or {key}=file:/path")


def show_run(run: RunRecord, *, as_json: bool = False) -> None:
    if as_json:
        out.print_json(json.dumps(asdict(run), default=str))
        return
    color = "green" if run.status in ("succeeded", "planned") else "yellow" if run.status == "waiting" else "red"
    out.print(f"run [bold]{escape(run.id)}[/bold] ({escape(run.runbook)}): [{color}]{run.status}[/{color}]")
    out.print(f"  started by {escape(run.trigger.kind)}/{escape(run.trigger.who)}: {escape(run.trigger.why)}")
    if run.error:
        out.print(Text.assemble("  ", (run.error, "red")))
    for warning in run.warnings:  # best-effort steps that failed: the run went on without them
        out.print(Text.assemble("  ", (f"warning: {warning}", "yellow")))
    table = Table("step", "action", "status", "tries", "rollback", "detail", box=None, pad_edge=False)
    for s in run.steps:
        detail = s.error or (json.dumps(dict(s.outputs), default=str) if s.outputs is not None else "")
        table.add_row(
            s.id,
            s.action,
            s.status,
            str(s.attempts),
            s.compensation or "",
            Text(detail[:160] + ("…" if len(detail) > 160 else "")),
        )
    out.print(table)
    if run.status == "waiting":
        out.print(f"  waiting at [bold]{escape(str(run.waiting_on))}[/bold]: scaler runbook approve {escape(run.id)}")


def show_plan(plan: Plan) -> None:
    out.print(f"plan for [bold]{escape(plan.runbook)}[/bold] (scope {escape(plan.scope)})")
    for name, value in plan.params.items():
        out.print(f"  {escape(name)} = {escape(json.dumps(value, default=str))}")
    for c in plan.checks:
        out.print(f"  precondition: {escape(str(c))} {escape(json.dumps(dict(c.args), default=str))}")
    for i, step in enumerate(plan.steps, 1):
        out.print(f"{i:2}. [bold]{escape(step.id)}[/bold] {escape(step.action)} (on failure: {step.on_failure})")
        for c in step.calls:
            mark = "writes" if c.mutates else "reads "
            out.print(f"      {mark} {escape(str(c))} {escape(json.dumps(dict(c.args), default=str))}")
        for c in step.compensate:
            out.print(f"      undo   {escape(str(c))} {escape(json.dumps(dict(c.args), default=str))}")


def finish(run: RunRecord, as_json: bool) -> None:
    show_run(run, as_json=as_json)
    if run.status in FAILED:
        raise typer.Exit(1)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step and retry")] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (provider wire logs stay off)")
    ] = "warning",
) -> None:
    if log_level.lower() not in logs.LEVELS:
        error(f"--log-level: expected debug, info, warning or error, got {log_level!r}", err)
        raise typer.Exit(2)
    logs.setup(log_level, "text")
    if verbose:  # each step and retry at info, also when everything else logs warnings only
        logging.getLogger("scaler.runbook").setLevel(min(logging.INFO, logging.getLogger().level))


@app.command()
@friendly
def validate(files: Annotated[list[Path], typer.Argument(help="Runbook YAML files")]) -> None:
    """Check runbook files; every problem in every file is reported, naming the file and the field."""
    failed = 0
    for f in files:
        try:
            rb = load(f)
        except ConfigError as e:
            failed += 1
            say(err, "✗", "red", str(e))
            continue
        say(out, "✓", "green", f"{f}: runbook {rb.name!r} ({plural(len(rb.steps), 'step')})")
    if failed:
        raise typer.Exit(2)


@app.command("list")
@friendly
def list_runbooks(runbooks: Runbooks = Path("runbooks")) -> None:
    """List the runbooks in a directory with their parameters."""
    table = Table("runbook", "steps", "parameters (* required, ! secret)", "description", box=None)
    for name, (_, rb) in sorted(load_dir(runbooks).items()):
        params = " ".join(
            f"{n}{'*' if p.is_required else ''}{'!' if p.secret else ''}" for n, p in rb.parameters.items()
        )
        table.add_row(name, str(len(rb.steps)), escape(params), escape(shorten(rb.description, 90)))
    out.print(table)


@app.command()
@friendly
def plan(
    name: Annotated[str, typer.Argument(help="Runbook name")],
    param: Params = None,
    runbooks: Runbooks = Path("runbooks"),
    journal: JournalOpt = None,
    audit: AuditOpt = None,
    endpoint_url: Endpoint = None,
    region: Region = "us-east-1",
) -> None:
    """Show the provider calls a run would make with these parameters; calls nothing, writes nothing."""
    svc, params = service(runbooks, journal, audit, endpoint_url, region, lazy=True), parse_params(param)
    warn_secrets_by_value(svc, name, params)
    show_plan(svc.plan(name, params))


@app.command()
@friendly
def run(
    name: Annotated[str, typer.Argument(help="Runbook name")],
    param: Params = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Journal a plan; call no provider")] = False,
    require_approval: Annotated[
        bool,
        typer.Option("--require-approval", help="Create the run but wait for `approve` before the first step"),
    ] = False,
    who: Annotated[str | None, typer.Option("--who", help="Who starts it (default: login name)")] = None,
    why: Annotated[str, typer.Option("--why", help="Why: incident, ticket, drill")] = "",
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key: a repeat returns the first run")] = None,
    runbooks: Runbooks = Path("runbooks"),
    journal: JournalOpt = None,
    audit: AuditOpt = None,
    endpoint_url: Endpoint = None,
    region: Region = "us-east-1",
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON")] = False,
) -> None:
    """Run a runbook until it finishes, fails (and rolls back) or waits for an approval."""
    trigger = Trigger(kind="manual", who=who or login_name(), why=why, key=key)
    svc, params = service(runbooks, journal, audit, endpoint_url, region), parse_params(param)
    warn_secrets_by_value(svc, name, params)
    record = svc.start(name, params, trigger=trigger, dry_run=dry_run, require_approval=require_approval)
    finish(record, as_json)


@app.command()
@friendly
def approve(
    run_id: Annotated[str, typer.Argument(help="Run waiting for approval")],
    who: Annotated[str | None, typer.Option("--who", help="Approver (default: login name)")] = None,
    runbooks: Runbooks = Path("runbooks"),
    journal: JournalOpt = None,
    audit: AuditOpt = None,
    endpoint_url: Endpoint = None,
    region: Region = "us-east-1",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve the gate a run waits at, and continue it."""
    svc = service(runbooks, journal, audit, endpoint_url, region)
    finish(svc.approve(run_id, who=who or login_name()), as_json)


@app.command()
@friendly
def resume(
    run_id: Annotated[str, typer.Argument(help="Interrupted run")],
    runbooks: Runbooks = Path("runbooks"),
    journal: JournalOpt = None,
    audit: AuditOpt = None,
    endpoint_url: Endpoint = None,
    region: Region = "us-east-1",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Continue an interrupted run from its first unfinished step; finished steps are not repeated."""
    finish(service(runbooks, journal, audit, endpoint_url, region).resume(run_id), as_json)


@app.command()
@friendly
def status(
    run_id: Annotated[str | None, typer.Argument(help="A run id; omit for the latest runs")] = None,
    runbooks: Runbooks = Path("runbooks"),
    journal: JournalOpt = None,
    audit: AuditOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one run in detail, or the latest runs."""
    runs = service(runbooks, journal, audit, None, "us-east-1").status(run_id)
    if run_id is not None:
        show_run(runs[0], as_json=as_json)
        return
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in runs], default=str))
        return
    table = Table(box=None)
    # Run ids are copied into approve/resume commands, so they are never shortened.
    table.add_column("run", no_wrap=True, min_width=max((len(r.id) for r in runs), default=3))
    for name in ("runbook", "status", "trigger", "why"):
        table.add_column(name)
    for r in runs:
        table.add_row(
            escape(r.id),
            escape(r.runbook),
            r.status,
            escape(f"{r.trigger.kind}/{r.trigger.who}"),
            escape(r.trigger.why[:60]),
        )
    out.print(table)
