"""`scaler policy validate|schema`: check policy files (and HPA manifests), print the JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from scaler.cli.common import err, friendly, out, plural, say

app = typer.Typer(help="Check and describe policies.", no_args_is_help=True)


@app.command("validate")
@friendly
def policy_validate(files: Annotated[list[Path], typer.Argument(help="Policy YAML files or HPA manifests")]):
    """Validate policies; every problem in every file is reported, naming file and field."""
    from scaler.errors import ConfigError
    from scaler.policy.load import load_policy

    failed = 0
    for f in files:
        try:
            p = load_policy(f)
        except ConfigError as e:
            failed += 1
            say(err, "✗", "red", str(e))
            continue
        say(out, "✓", "green", f"{f}: policy {p.name!r} ({p.algorithm}, {plural(len(p.metrics), 'metric')}, "
            f"replicas {p.replicas.min}-{p.replicas.max})")
    if failed:
        raise typer.Exit(2)


@app.command("schema")
def policy_schema():
    """Print the policy JSON Schema (for editors and CI checks)."""
    from scaler.policy.model import Policy

    sys.stdout.write(json.dumps(Policy.model_json_schema(), indent=2) + "\n")
