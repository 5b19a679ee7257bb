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


# --- names that are not names, files outside the directories given, errors printed as they are -----------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "../outside"], "'../outside' is not a runbook name"),
        (["plan", "/tmp/outside"], "'/tmp/outside' is not a runbook name"),
        (["resume", "../../X"], "'../../X' is not a run id"),
        (["approve", "../../X"], "'../../X' is not a run id"),
        (["status", "../../X"], "'../../X' is not a run id"),
    ],
    ids=["run", "plan", "resume", "approve", "status"],
)
def test_a_name_that_is_a_path_is_refused_and_nothing_outside_is_touched(tmp_path: Path, args: list[str],
                                                                          message: str) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (tmp_path / "outside.yaml").write_text("name: outside\nsteps: [not: {valid")  # must never be parsed
    journal = tmp_path / "state" / "journal.db"
    result = cli(*args, "--runbooks", str(runbooks), "--journal", str(journal))
    assert result.exit_code == 2, result.output
    assert message in result.output and "outside.yaml" not in result.output
    # the journal is opened where a run needs it; a plan, which only looks, leaves nothing on disk
    opened = [] if args[0] == "plan" else ["state"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.yaml", "runbooks", *opened]
    assert not list(tmp_path.rglob("*.lock"))


def test_a_journal_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    journal.write_bytes(b"not a database at all, " * 200)
    journal.chmod(0o600)  # (a file others may read is warned about first: tests/test_private_files.py)
    result = cli("status", "--journal", str(journal))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: journal {journal}: file is not a database"


def test_error_text_is_printed_as_it_is_not_read_as_markup(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "x.yaml").write_text("name: x\nparameters: {p: {}}\nsteps: [{id: a, action: wait, inputs: "
                                     "{seconds: 1}}]\n")
    bad = cli("run", "[red]x", "--runbooks", str(runbooks), "--journal", str(tmp_path / "j.db"))
    assert bad.exit_code == 2 and "'[red]x' is not a runbook name" in bad.output
    unknown = cli("plan", "x", "-p", "p=1", "-p", "[bold]q=1", "--runbooks", str(runbooks))
    assert unknown.exit_code == 2 and "params.[bold]q: unknown parameter" in unknown.output
    broken = tmp_path / "[bold]broken.yaml"
    broken.write_text("name: [x\n")
    checked = cli("validate", str(broken))
    assert checked.exit_code == 2 and f"{broken}: invalid config" in checked.output


# --- a secret given by value on the command line ----------------------------------------------------------


def test_a_secret_given_by_value_works_but_warns_that_the_process_list_shows_it(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "hook.yaml").write_text(
        "name: hook\nparameters: {url: {secret: true}, text: {default: hi}}\n"
        "steps: [{id: tell, action: notify.webhook, inputs: {url: '{{ params.url }}', text: '{{ params.text }}'}}]\n")
    by_value = cli("plan", "hook", "-p", "url=https://hooks.example/T0K3N-abc", "-p", "text=x",
                   "--runbooks", str(runbooks))
    assert by_value.exit_code == 0, by_value.output
    assert ("warning: secret parameter url is given by value on the command line, where other users can read it "
            "in the process list; give it as url=env:VARIABLE or url=file:/path") in by_value.output
    assert "T0K3N-abc" not in by_value.output
    by_reference = cli("plan", "hook", "-p", "url=env:HOOK_URL", "--runbooks", str(runbooks))
    assert by_reference.exit_code == 0 and "warning" not in by_reference.output


# --- plan touches nothing on disk; list and validate read well ---------------------------------------------


def test_plan_creates_no_journal_no_audit_log_and_no_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    default = cli("plan", "maintenance-mode", "-p", "state=on", "-p", "listener_arn=arn:l", "--runbooks",
                  str(RUNBOOKS), env={"SCALER_STATE_DIR": str(state)})
    assert default.exit_code == 0, default.output
    assert "elbv2" in default.output
    named = cli("plan", "maintenance-mode", "-p", "state=on", "-p", "listener_arn=arn:l", "--runbooks",
                str(RUNBOOKS), "--journal", str(state / "j" / "journal.db"), "--audit", str(state / "a" / "a.jsonl"))
    assert named.exit_code == 0, named.output
    assert list(tmp_path.iterdir()) == []


LONG = ("Fail the web tier over to the secondary region when the primary stops answering, then scale the standby "
        "group up and verify the new primary serves before telling the team")


def test_list_cuts_a_long_description_at_a_word_and_validate_counts_in_words(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "one.yaml").write_text(f"name: one\ndescription: {LONG}\n"
                                       "steps: [{id: a, action: wait, inputs: {seconds: 1}}]\n")
    listed = cli("list", "--runbooks", str(runbooks))
    assert listed.exit_code == 0, listed.output
    # 90 characters at most, ending at a word; the table may wrap it further, also between words
    row = " ".join(listed.output.split("description", 1)[1].split())
    assert row == "one 1 Fail the web tier over to the secondary region when the primary stops answering, then…"
    checked = cli("validate", str(runbooks / "one.yaml"))
    assert checked.exit_code == 0 and checked.output.strip().endswith("runbook 'one' (1 step)")


@pytest.mark.parametrize(
    ("text", "width", "shown"),
    [
        ("short enough", 20, "short enough"),
        ("exactly twenty chars", 20, "exactly twenty chars"),
        ("a word that does not fit", 12, "a word that…"),
        ("a word that does not fit", 11, "a word…"),
        ("ends at a word, then more", 16, "ends at a word…"),
        ("  spaces\n and\tlines   collapse ", 40, "spaces and lines collapse"),
        ("oneverylongwordwithoutspaces", 10, "oneverylo…"),
    ],
    ids=["fits", "fits-exactly", "drops-the-cut-word", "drops-the-cut-word-2", "trailing-comma-dropped",
         "whitespace", "one-long-word"],
)
def test_shorten_cuts_at_a_word_boundary(text: str, width: int, shown: str) -> None:
    from scaler.cli.runbook import shorten

    assert shorten(text, width) == shown
    assert len(shorten(text, width)) <= width


def test_policy_validate_counts_one_metric_as_one_metric(tmp_path: Path) -> None:
    from scaler.cli.main import app as main

    path = tmp_path / "one.yaml"
    path.write_text("name: one\nreplicas: {min: 1, max: 4}\nmetrics: [{name: cpu, target: 70}]\n")
    result = runner.invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 metric," in result.output and "1 metrics" not in result.output
