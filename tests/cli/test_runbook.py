"""`scaler runbook ...` through typer's CliRunner: clear errors with exit 2, runs against a moto server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from scaler.cli.runbook import app
from tests.runbook.helpers import PRIMARY, RUNBOOKS, ClientFor, World, build_world, current_secret, flag_value
from tests.support.moto_server import MotoServer

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "journal.db")


@pytest.fixture
def server_world(server_client: ClientFor) -> World:
    """Only what maintenance-mode and rotate-secret touch."""
    return build_world(server_client, frozenset({"alb", "flag", "secrets"}))


BAD_INPUT = [
    ("unknown runbook", ["run", "nope", "--runbooks", str(RUNBOOKS)], "no runbook named 'nope'"),
    ("param without =", ["plan", "maintenance-mode", "--runbooks", str(RUNBOOKS), "--param", "state"],
     "expected key=value"),
    ("param twice", ["plan", "maintenance-mode", "--runbooks", str(RUNBOOKS), "-p", "state=on", "-p", "state=off"],
     "state given twice"),
    ("bad param values", ["run", "maintenance-mode", "--runbooks", str(RUNBOOKS), "-p", "state=maybe"],
     "params.state: must be one of"),
    ("missing directory", ["list", "--runbooks", "/nonexistent/runbooks"], "runbooks directory not found"),
    ("unknown run", ["status", "run-that-never-was"], "no run run-that-never-was"),
    ("approve unknown run", ["approve", "run-that-never-was"], "no run run-that-never-was"),
]


@pytest.mark.parametrize(("args", "message"), [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_one_message_and_exit_2(args: list[str], message: str, journal: str) -> None:
    if args[0] in ("status", "approve"):
        args = [*args, "--journal", journal]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_list_shows_shipped_runbooks() -> None:
    result = cli("list", "--runbooks", str(RUNBOOKS))
    assert result.exit_code == 0
    for name in ("region-failover", "maintenance-mode", "rotate-secret", "security-lockdown"):
        assert name in result.output


def test_plan_masks_the_secret_and_lists_calls() -> None:
    result = cli("plan", "region-failover", "--runbooks", str(RUNBOOKS), "-p", "zone_id=Z1", "-p",
                 "record_name=app.example.com", "-p", "secondary=west", "-p", "primary_region=us-east-1", "-p",
                 "secondary_region=us-west-2", "-p", "listener_arn=arn:l", "-p", "standby_asg=standby", "-p",
                 "health_url=http://h/health", "-p", "webhook_url=https://hooks.example/T0K3N-abc")
    assert result.exit_code == 0, result.output
    assert "route53.change_resource_record_sets" in result.output
    assert "autoscaling.set_desired_capacity" in result.output and "undo" in result.output
    assert "T0K3N-abc" not in result.output and "***" in result.output


def test_run_status_and_exit_codes_against_moto(moto: MotoServer, server_client: ClientFor, server_world: World,
                                                journal: str) -> None:
    common = ["--runbooks", str(RUNBOOKS), "--journal", journal, "--endpoint-url", moto.url, "--region", PRIMARY]
    on = cli("run", "maintenance-mode", "-p", "state=on", "-p", f"listener_arn={server_world.listener_arn}",
             "--who", "alice", "--why", "db upgrade", *common)
    assert on.exit_code == 0, on.output
    assert "succeeded" in on.output and "listener_rule" in on.output
    assert flag_value(server_client, server_world) == "on"
    run_id = on.output.split()[1]

    shown = cli("status", run_id, "--journal", journal, "--json")
    record = json.loads(shown.output)
    assert (record["status"], record["trigger"]["who"], record["trigger"]["why"]) == ("succeeded", "alice",
                                                                                      "db upgrade")
    listing = cli("status", "--journal", journal)
    assert run_id in listing.output

    # A listener that does not exist: the run fails, rolls back, and the exit code says so.
    bad = cli("run", "maintenance-mode", "-p", "state=off", "-p", "listener_arn=arn:aws:elasticloadbalancing:"
              "us-east-1:123456789012:listener/app/nope/1/2", *common)
    assert bad.exit_code == 1 and "rolled_back" in bad.output and "ListenerNotFound" in bad.output


def test_dry_run_and_approval_flow(moto: MotoServer, server_client: ClientFor, server_world: World,
                                   journal: str) -> None:
    common = ["--runbooks", str(RUNBOOKS), "--journal", journal, "--endpoint-url", moto.url]
    params = ["-p", "state=on", "-p", f"listener_arn={server_world.listener_arn}"]
    planned = cli("run", "maintenance-mode", *params, "--dry-run", *common)
    assert planned.exit_code == 0 and "planned" in planned.output
    assert flag_value(server_client, server_world) == "off"

    pending = cli("run", "maintenance-mode", *params, "--require-approval", *common)
    assert pending.exit_code == 0 and "waiting" in pending.output and "scaler runbook approve" in pending.output
    run_id = pending.output.split()[1]
    assert flag_value(server_client, server_world) == "off"
    approved = cli("approve", run_id, "--who", "bob", *common)
    assert approved.exit_code == 0 and "succeeded" in approved.output
    assert flag_value(server_client, server_world) == "on"
    again = cli("resume", run_id, *common)
    assert again.exit_code == 0 and "succeeded" in again.output


def test_rotation_output_never_shows_the_value(moto: MotoServer, server_client: ClientFor, server_world: World,
                                               journal: str) -> None:
    result = cli("run", "rotate-secret", "-p", "secret_id=prod/api", "--json", "--runbooks", str(RUNBOOKS),
                 "--journal", journal, "--endpoint-url", moto.url)
    assert result.exit_code == 0, result.output
    _, value = current_secret(server_client, "prod/api")
    assert value != "initial-api-key" and value not in result.output
    assert json.loads(result.output)["steps"][0]["outputs"]["rotated"][0]["secret_id"] == "prod/api"
