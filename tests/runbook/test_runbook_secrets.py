"""No secret value ever lands in the journal, the audit trail, the logs or CLI output (searched as bytes)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli.runbook import app
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import PRIMARY, ClientFor, Web, World, failover_params

WHO = Trigger(kind="manual", who="sec", why="incident 42")
HOOK_TOKEN = "SECRET-hook-token-123"


def every_secret_value(client: ClientFor, world: World) -> set[str]:
    """Every value any version of the test secrets holds (old, new, rolled back), plus the webhook token."""
    sm = client("secretsmanager", PRIMARY)
    values = {HOOK_TOKEN}
    for sid in world.secrets:
        for version in sm.list_secret_version_ids(SecretId=sid, IncludeDeprecated=True)["Versions"]:
            values.add(sm.get_secret_value(SecretId=sid, VersionId=version["VersionId"])["SecretString"])
    return values


def test_no_secret_in_journal_audit_logs_or_cli(server_service: RunbookService, server_client: ClientFor,
                                                server_world: World, web: Web, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scaler")
    caplog.set_level(logging.DEBUG, logger="scaler.runbook")
    svc = server_service
    hook = f"{web.url}/hook?token={HOOK_TOKEN}"
    # A rotation whose test fails: setSecret is undone with the current value, which is read back.
    web.auth_status = [401]
    failed = svc.start("rotate-secret", {"secret_id": "prod/db", "apply_to_parameter": "/app/db",
                                         "test_url": f"{web.url}/auth"}, trigger=WHO)
    assert failed.status == "rolled_back" and "status 401" in str(failed.error)
    # Then one that works, a lockdown rotating both again, and a failover with the webhook secret.
    assert svc.start("rotate-secret", {"secret_id": "prod/db", "apply_to_parameter": "/app/db",
                                       "test_url": f"{web.url}/auth"}, trigger=WHO).status == "succeeded"
    lockdown = svc.start("security-lockdown", {
        "secret_ids": "prod/db,prod/api", "apply_to_parameter": "/app/{secret_id}",
        "listener_arn": server_world.listener_arn, "webhook_url": hook}, trigger=WHO)
    assert lockdown.status == "succeeded", lockdown.error
    plan = svc.plan("region-failover", failover_params(server_world, web, webhook_url=hook))
    failover = svc.start("region-failover", failover_params(server_world, web, webhook_url=hook), trigger=WHO)
    assert failover.status == "succeeded", failover.error

    secrets = every_secret_value(server_client, server_world)
    assert len(secrets) >= 6  # token, 2 initial values, 3 rotated values (one rotation was undone)
    applied = server_client("ssm", PRIMARY).get_parameter(Name="/app/prod/api", WithDecryption=True)
    assert applied["Parameter"]["Value"] in secrets  # the values really went where they belong

    runner = CliRunner()
    journal = svc.journal.path
    cli = [runner.invoke(app, ["status", "--journal", str(journal)]),
           runner.invoke(app, ["status", lockdown.id, "--journal", str(journal)]),
           runner.invoke(app, ["status", failover.id, "--journal", str(journal), "--json"])]
    assert all(r.exit_code == 0 for r in cli) and failover.id in cli[2].output

    written = {
        "journal": b"".join(p.read_bytes() for p in journal.parent.glob("journal.db*")),
        "audit": svc.audit.path.read_bytes(),
        "logs": caplog.text.encode(),
        "cli": "".join(r.output for r in cli).encode(),
        "records": repr([failed, lockdown, failover, plan, svc.status()]).encode(),
    }
    assert b"put_secret_value" in written["audit"] and b"***" in written["audit"]
    assert b"attempt 1" in written["logs"]  # the engine did log, and the log is searched
    for where, data in written.items():
        for secret in secrets:
            assert secret.encode() not in data, f"a secret value leaked into the {where}"
