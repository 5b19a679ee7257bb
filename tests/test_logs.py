"""Process logging: the level and format chosen, and provider libraries' wire logging off at every level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from scaler import logs

LEVELS = ["debug", "info", "warning", "error"]
WIRE_ROOTS = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "kubernetes")
WIRE = [*WIRE_ROOTS, "botocore.endpoint", "botocore.parsers", "boto3.resources", "s3transfer.tasks",
        "urllib3.connectionpool", "kubernetes.client.rest"]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup() changes process-wide state; put back what each test changed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in [*WIRE, "scaler"]}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("level", LEVELS)
def test_wire_loggers_say_nothing_below_info_at_any_level(level: str, fmt: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(level, fmt)
    for name in WIRE:
        logging.getLogger(name).debug("body: %s", f"wire-secret-{name}")
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    logging.getLogger("scaler.x").debug("own debug line")
    logging.getLogger("scaler.x").error("own error line")
    err = capsys.readouterr().err
    assert "wire-secret" not in err
    assert "own error line" in err
    assert ("own debug line" in err) == (level == "debug")


def test_a_wire_logger_lowered_after_setup_is_still_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("debug", "text")
    # e.g. a library that turns on its own debug logging after startup
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    logging.getLogger("botocore.endpoint").debug("Making request with params: {'body': 'wire-secret'}")
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    err = capsys.readouterr().err
    assert "wire-secret" not in err and "Found credentials" in err


def test_a_real_secrets_manager_call_at_debug_logs_no_secret(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    logs.setup("debug", "json")
    value = "s3cr3t-rotated-value-7f1d0c2b9e"
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        sm.create_secret(Name="db", SecretString="initial")
        sm.put_secret_value(SecretId="db", SecretString=value, VersionStages=["AWSPENDING"])
        assert sm.get_secret_value(SecretId="db", VersionStage="AWSPENDING")["SecretString"] == value
        logging.getLogger("scaler.runbook").debug("rotated %s", "db")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert {"logger": "scaler.runbook", "level": "debug"}.items() <= lines[-1].items()  # debug is on
    assert value not in err
    assert not [x for x in lines if x["logger"].split(".")[0] in WIRE_ROOTS and x["level"] == "debug"]


def test_setup_again_replaces_its_own_handler_and_keeps_others(capsys: pytest.CaptureFixture[str]) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    logs.setup("info", "json")
    logs.setup("warning", "text")
    root = logging.getLogger()
    assert other in root.handlers and sum(isinstance(h, logs.StderrHandler) for h in root.handlers) == 1
    assert root.level == logging.WARNING
    logging.getLogger("scaler.x").warning("once")
    assert capsys.readouterr().err.count("once") == 1
