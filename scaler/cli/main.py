"""The `scaler` command line: run, status, simulate, tune, policy validate|schema, runbook and serve."""

from __future__ import annotations

import typer

from scaler.cli.policy import app as policy_app
from scaler.cli.run import run, status
from scaler.cli.runbook import app as runbook_app
from scaler.cli.serve import serve
from scaler.cli.simulate import simulate
from scaler.cli.tune import tune

app = typer.Typer(help="Metrics-driven autoscaling and disaster recovery.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.command("run")(run)
app.command("status")(status)
app.command("simulate")(simulate)
app.command("tune")(tune)
app.command("serve")(serve)
app.add_typer(policy_app, name="policy")
app.add_typer(runbook_app, name="runbook")


def main() -> None:  # pragma: no cover - console entry point
    app()
