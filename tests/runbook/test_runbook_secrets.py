"""No secret value lands in the journal, the audit trail, the logs or CLI output (searched as bytes), at any level."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from typer.testing import CliRunner

from scaler import logs
from scaler.aws import AwsSettings
from scaler.cli.runbook import app
from scaler.runbook.records import RunRecord
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import (
    PRIMARY,
    RUNBOOKS,
    ClientFor,
    Web,
    World,
    build_world,
    current_secret,
    failover_params,
)
from tests.support.moto_server import CREDENTIALS, MotoServer

WHO = Trigger(kind="manual", who="sec", why="incident 42")
HOOK_TOKEN = "SECRET-hook-token-123"
WEBHOOK_TOKEN = "debug-webhook-token-2c9e41f07ab3"
ROOT = RUNBOOKS.parent
T = TypeVar("T")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.setup() and the CLI change process-wide logging; put back what they changed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "kubernetes", "scaler", "scaler.runbook")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def every_secret_value(client: ClientFor, world: World) -> set[str]:
    """Every value any version of the test secrets holds (old, new, rolled back), plus the webhook token."""
    sm = client("secretsmanager", PRIMARY)
    values = {HOOK_TOKEN}
    for sid in world.secrets:
        for version in sm.list_secret_version_ids(SecretId=sid, IncludeDeprecated=True)["Versions"]:
            values.add(sm.get_secret_value(SecretId=sid, VersionId=version["VersionId"])["SecretString"])
    return values


@pytest.mark.parametrize("level", ["scaler-debug", "debug"])
def test_no_secret_in_journal_audit_logs_or_cli(server_service: RunbookService, server_client: ClientFor,
                                                server_world: World, web: Web, tmp_path: Path, level: str,
                                                caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                                                restore_logging: None) -> None:
    if level == "debug":
        # Everything at debug, as `scaler serve --log-level debug` sets it up.
        logs.setup("debug", "text")
        caplog.set_level(logging.DEBUG)
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
    opts = ["--log-level", "debug"] if level == "debug" else []
    cli = [runner.invoke(app, [*opts, "status", "--journal", str(journal)]),
           runner.invoke(app, [*opts, "status", lockdown.id, "--journal", str(journal)]),
           runner.invoke(app, [*opts, "status", failover.id, "--journal", str(journal), "--json"])]
    assert all(r.exit_code == 0 for r in cli) and failover.id in cli[2].output

    written = {
        "journal": b"".join(p.read_bytes() for p in journal.parent.glob("journal.db*")),
        "audit": svc.audit.path.read_bytes(),
        "logs": caplog.text.encode(),
        "stderr": capsys.readouterr().err.encode(),
        "cli": "".join(r.output for r in cli).encode(),
        "records": repr([failed, lockdown, failover, plan, svc.status()]).encode(),
    }
    assert b"put_secret_value" in written["audit"] and b"***" in written["audit"]
    assert b"attempt 1" in written["logs"]  # the engine did log, and the log is searched
    for where, data in written.items():
        for secret in secrets:
            assert secret.encode() not in data, f"a secret value leaked into the {where}"


# -- the commands themselves, at debug, in processes of their own ------------------------------------------


def secrets_and_token(client: ClientFor) -> set[str]:
    """Every value any version of prod/db ever held, and the token `scaler serve` accepts alerts with."""
    return every_secret_value(client, World(secrets=("prod/db",))) - {HOOK_TOKEN} | {WEBHOOK_TOKEN}


def assert_no_secret(secrets: set[str], **outputs: bytes) -> None:
    for where, data in outputs.items():
        for secret in secrets:
            assert secret.encode() not in data, f"a secret value leaked into {where}"


def rotation_params(web: Web) -> dict[str, str]:
    return {"secret_id": "prod/db", "apply_to_parameter": "/app/db", "test_url": f"{web.url}/auth"}


def finished_runs(journal: Path, moto: MotoServer, n: int) -> list[RunRecord]:
    """The `n` runs in the journal, oldest first, once there are `n` and all are finished; else []."""
    if not journal.exists():
        return []
    svc = RunbookService(runbooks_dir=RUNBOOKS, journal_path=journal, audit_path=journal.with_name("audit.jsonl"),
                         aws=AwsSettings(region=PRIMARY, endpoint_url=moto.url))
    runs = svc.status()[::-1]
    return runs if len(runs) == n and all(r.finished for r in runs) else []


def test_serve_at_debug_logs_no_secret_of_a_rotation_it_runs(moto: MotoServer, server_client: ClientFor,
                                                              web: Web, tmp_path: Path) -> None:
    build_world(server_client, frozenset({"secrets"}))
    before = current_secret(server_client, "prod/db")
    journal = tmp_path / "state" / "journal.db"
    rule = {"name": "leaked", "match": {"alertname": "SecretLeaked"}, "runbook": "rotate-secret", "auto": True,
            "params": rotation_params(web)}
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "webhook": {"token_env": "SCALER_TEST_WEBHOOK_TOKEN"},
        "runbooks_dir": str(RUNBOOKS), "journal": str(journal), "audit": str(tmp_path / "state" / "audit.jsonl"),
        "aws": {"region": PRIMARY, "endpoint_url": moto.url}, "triggers": [rule]}))
    # The service first rejects the new value (testSecret fails, setSecret is undone with the current value,
    # read back, and the run rolls back); a second alert then rotates for good. Between them every
    # secret-bearing call (PutSecretValue, GetSecretValue, PutParameter, GetParameter) is made.
    web.auth_status = [401]
    env = {**os.environ, **CREDENTIALS, "SCALER_TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN}
    stderr = tmp_path / "serve.stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "scaler.cli.serve", str(config), "--log-level", "debug"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
    try:
        first = read_line(proc)
        assert first.startswith(b"scaler serve: listening on "), (first, stderr.read_bytes()[-2000:])
        url = first.split(b" on ", 1)[1].strip().decode()
        wait_until(lambda: get_status(f"{url}/readyz") == 200, 30, stderr)
        post_alert(f"{url}/alertmanager", fingerprint="0a1b2c3d")
        (rejected,) = wait_until(lambda: finished_runs(journal, moto, 1), 60, stderr)
        post_alert(f"{url}/alertmanager", fingerprint="4e5f6a7b")
        _, rotated = wait_until(lambda: finished_runs(journal, moto, 2), 60, stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, stderr.read_bytes()[-2000:]

    assert (rejected.status, rotated.status) == ("rolled_back", "succeeded"), (rejected.error, rotated.error)
    assert len(web.bearer) == 2 and current_secret(server_client, "prod/db") != before
    log = stderr.read_bytes()
    assert b" DEBUG scaler." in log  # debug really was on, so the search below means something
    secrets = secrets_and_token(server_client)
    assert len(secrets) == 4  # the token, the initial value, the rejected value and the current one
    assert_no_secret(secrets, stderr=log, stdout=first + out)


def post_alert(url: str, *, fingerprint: str) -> None:
    """One firing SecretLeaked alert, as Alertmanager posts it."""
    alert = {"status": "firing", "labels": {"alertname": "SecretLeaked"}, "annotations": {},
             "startsAt": datetime.now(UTC).isoformat(), "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": fingerprint}
    payload = {"version": "4", "receiver": "scaler", "status": "firing", "alerts": [alert], "groupLabels": {},
               "commonLabels": alert["labels"], "commonAnnotations": {}, "externalURL": "", "groupKey": "{}",
               "truncatedAlerts": 0}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status in (200, 202)  # accepted; the run starts in the background


def test_runbook_cli_at_debug_logs_no_secret(moto: MotoServer, server_client: ClientFor, web: Web,
                                             tmp_path: Path) -> None:
    build_world(server_client, frozenset({"secrets"}))
    web.auth_status = [401]  # as above: a rejected value rolled back, then a rotation that stays
    args = ["runbook", "--log-level", "debug", "run", "rotate-secret", "--runbooks", str(RUNBOOKS),
            "--journal", str(tmp_path / "journal.db"), "--endpoint-url", moto.url, "--region", PRIMARY, "--json"]
    for name, value in rotation_params(web).items():
        args += ["-p", f"{name}={value}"]
    runs = [subprocess.run([sys.executable, "-c", "from scaler.cli.main import app; app()", *args], cwd=ROOT,
                           env={**os.environ, **CREDENTIALS}, capture_output=True, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [1, 0], runs[-1].stderr[-2000:]
    assert [json.loads(r.stdout)["status"] for r in runs] == ["rolled_back", "succeeded"]
    stderr, stdout = b"".join(r.stderr for r in runs), b"".join(r.stdout for r in runs)
    assert b" INFO scaler.runbook: " in stderr  # below the default (warning): the level took effect
    secrets = secrets_and_token(server_client)
    assert len(secrets) == 4  # as above
    assert_no_secret(secrets, stderr=stderr, stdout=stdout)


def read_line(proc: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else b""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else b""


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except OSError:  # HTTPError (503 while preparing) and refused connections alike
        return 0


def wait_until(check: Callable[[], T], timeout: float, log: Path) -> T:
    """check()'s first true value, polled every 0.1 s; the end of the log if none came in `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
