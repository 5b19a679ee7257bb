"""The HTTP server and webhook: auth, payload checks, dedup, metrics, and the serve config."""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from scaler.alerts.dispatch import Dispatcher, TriggerMetrics
from scaler.alerts.rules import Rule
from scaler.cli.serve import serve
from scaler.errors import ConfigError
from scaler.server.http import Limits, Server, Webhook
from scaler.server.serve import LimitsSection, load_serve_config, serving
from tests.support.fake_runbooks import FakeRunbookService

TOKEN = "s3cret-token-0123456789abcdef"
RULES = [
    Rule(name="region-down", match={"alertname": "RegionDown"}, runbook="region-failover", auto=True,
         params={"failed_region": "{{ labels.region }}"},
         on_resolved={"runbook": "region-failback", "params": {"region": "{{ labels.region }}"}}),
    Rule(name="secret-leak", match={"alertname": "SecretLeak"}, runbook="security-lockdown"),
]


def body(status: str = "firing", fp: str = "cbfaafaae97311d3", alertname: str = "RegionDown") -> dict:
    a = {"status": status, "labels": {"alertname": alertname, "region": "us-east-1"}, "annotations": {},
         "startsAt": "2025-03-01T12:00:00.123456789Z",
         "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-03-01T12:05:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": fp}
    return {"receiver": "scaler", "status": status, "alerts": [a], "groupLabels": {"alertname": alertname},
            "commonLabels": a["labels"], "commonAnnotations": {}, "externalURL": "http://am:9093",
            "version": "4", "groupKey": "{}:{alertname=\"RegionDown\"}", "truncatedAlerts": 0}


class App:
    def __init__(self, server: Server, dispatcher: Dispatcher, service: FakeRunbookService):
        self.server, self.dispatcher, self.service = server, dispatcher, service
        self.ready = (True, "ok")

    def request(self, method: str, path: str, data: bytes | dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        raw = json.dumps(data).encode() if isinstance(data, dict) else data
        conn.request(method, path, body=raw, headers=headers or {})
        resp = conn.getresponse()
        out = resp.status, resp.read().decode()
        conn.close()
        return out

    def post(self, data: bytes | dict, token: str | None = TOKEN) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", "/alertmanager", data, headers)

    def metric(self, line_start: str) -> float:
        _, text = self.request("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{line_start} not in /metrics")


@pytest.fixture
def app() -> Iterator[App]:
    registry = CollectorRegistry()
    service = FakeRunbookService()
    dispatcher = Dispatcher(service=service, rules=RULES, metrics=TriggerMetrics(registry))
    holder: dict[str, App] = {}
    server = Server(registry=registry, port=0, webhook=Webhook(token=TOKEN, submit=dispatcher.submit,
                                                                 max_body_bytes=4096),
                    ready=lambda: holder["app"].ready)
    holder["app"] = a = App(server, dispatcher, service)
    with server:
        yield a
    dispatcher.close()


# --- probes and metrics -----------------------------------------------------------------------------------


def test_health_and_readiness(app: App) -> None:
    assert app.request("GET", "/healthz") == (200, "ok\n")
    assert app.request("GET", "/readyz") == (200, "ok\n")
    app.ready = (False, "journal not writable")
    assert app.request("GET", "/readyz") == (503, "journal not writable\n")
    assert app.request("GET", "/nope")[0] == 404
    assert app.request("GET", "/alertmanager")[0] == 405


def test_metrics_count_received_rejected_started_and_duplicates(app: App) -> None:
    assert app.metric("scaler_webhook_received_total") == 0
    assert app.metric('scaler_webhook_rejected_total{reason="unauthorized"}') == 0
    app.post(body(), token="wrong-token-wrong-token")
    app.post(b"{nope")
    app.post(body())
    app.post(body())
    app.dispatcher.drain(5)
    assert app.metric("scaler_webhook_received_total") == 4
    assert app.metric('scaler_webhook_rejected_total{reason="unauthorized"}') == 1
    assert app.metric('scaler_webhook_rejected_total{reason="bad_json"}') == 1
    assert app.metric("scaler_webhook_accepted_total") == 2
    assert app.metric('scaler_trigger_runs_started_total{mode="auto",runbook="region-failover"}') == 1
    assert app.metric("scaler_trigger_duplicates_total") == 1


# --- authentication ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic-scheme", "longer", "empty"],
)
def test_unauthenticated_requests_get_401_and_run_nothing(app: App, headers: dict[str, str]) -> None:
    status, text = app.request("POST", "/alertmanager", body(), headers)
    assert status == 401 and "bearer token" in text
    app.dispatcher.drain(5)
    assert app.service.calls == []


def test_token_never_appears_in_logs(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app.post(body())
    app.post(body(), token=TOKEN[:-1])
    app.post(b"[]")
    app.dispatcher.drain(5)
    assert caplog.records and TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text


# --- payload checks -------------------------------------------------------------------------------------


def _without(d: dict, *path: str | int) -> dict:
    d = json.loads(json.dumps(d))
    node = d
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return d


def _with(d: dict, value: object, *path: str | int) -> dict:
    d = json.loads(json.dumps(d))
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "invalid JSON: Expecting property name"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[]", "invalid payload: payload: Input should be a valid dictionary"),
        (_without(body(), "alerts", 0, "fingerprint"), "alerts[0].fingerprint: Field required"),
        (_with(body(), "pending", "status"), "status: Input should be 'firing' or 'resolved'"),
        (_with(body(), "3", "version"), "invalid payload: version: Input should be '4'"),
        (_with(body(), "yesterday", "alerts", 0, "startsAt"), "invalid payload: alerts[0].startsAt: Input"),
        (_with(body(), {"region": 1}, "alerts", 0, "labels"), "alerts[0].labels.region: Input should be"),
        (_without(body(), "groupKey"), "invalid payload: groupKey: Field required"),
        (_with(body(), -1, "truncatedAlerts"), "truncatedAlerts: Input should be greater than or equal to 0"),
    ],
    ids=["bad-json", "not-utf8", "not-an-object", "no-fingerprint", "bad-status", "old-version",
         "bad-time", "label-not-string", "no-groupkey", "negative-truncated"],
)
def test_bad_bodies_get_400_naming_the_field_and_run_nothing(app: App, data: bytes | dict,
                                                               reason: str) -> None:
    status, text = app.post(data)
    assert status == 400
    assert text.startswith("invalid ") and reason in text and text.count("\n") == 1, text
    app.dispatcher.drain(5)
    assert app.service.calls == []


def test_oversized_body_gets_413(app: App) -> None:
    status, text = app.post(_with(body(), "x" * 5000, "externalURL"))
    assert (status, text) == (413, "body over 4096 bytes\n")
    assert app.metric('scaler_webhook_rejected_total{reason="too_large"}') == 1


def test_missing_content_length_gets_411(app: App) -> None:
    with socket.create_connection(("127.0.0.1", app.server.port), timeout=5) as s:
        s.sendall(f"POST /alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 411")


def test_unknown_fields_are_ignored_for_forward_compatibility(app: App) -> None:
    status, _ = app.post(_with(body(), "x", "someFutureField"))
    assert status == 202


# --- dispatch through HTTP ------------------------------------------------------------------------------


def test_valid_alert_gets_202_and_starts_one_run_even_when_delivered_twice(app: App) -> None:
    status, text = app.post(body())
    assert status == 202
    (first,) = json.loads(text)["alerts"]
    assert first["result"] == "queued" and first["runbook"] == "region-failover"
    app.dispatcher.drain(5)
    status, text = app.post(body())
    (again,) = json.loads(text)["alerts"]
    assert (status, again["result"], again["run_id"]) == (202, "duplicate", "run-1")
    key = "alertmanager:cbfaafaae97311d3:2025-03-01T12:00:00.123456+00:00:firing"
    assert again["key"] == first["key"] == key
    assert len(app.service.calls) == 1
    assert app.service.calls[0].params == {"failed_region": "us-east-1"}


def test_resolved_alert_starts_the_recovery_runbook(app: App) -> None:
    app.post(body())
    app.post(body(status="resolved"))
    app.dispatcher.drain(5)
    assert [c.runbook for c in app.service.calls] == ["region-failover", "region-failback"]
    assert app.service.calls[1].status == "waiting"


def test_approval_rule_creates_a_pending_run(app: App) -> None:
    app.post(body(alertname="SecretLeak"))
    app.dispatcher.drain(5)
    (run,) = app.service.calls
    assert (run.runbook, run.status) == ("security-lockdown", "waiting")


def test_unmatched_alert_is_accepted_and_starts_nothing(app: App) -> None:
    status, text = app.post(body(alertname="HighCPU"))
    assert status == 202 and json.loads(text)["alerts"][0]["result"] == "unmatched"


def test_stop_releases_the_port() -> None:
    server = Server(registry=CollectorRegistry(), port=0).start()
    port = server.port
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    Server(registry=CollectorRegistry(), port=port).stop()  # the port is free again


# --- serve config ---------------------------------------------------------------------------------------


FLAG_RUNBOOK = """
name: region-failover
parameters: {failed_region: {}, flag: {default: /scaler/maintenance}}
steps:
  - {id: flag, action: ssm.set_parameter, inputs: {name: "{{ params.flag }}", value: "{{ params.failed_region }}"}}
"""


def _config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "runbooks" / "region-failover.yaml").write_text(FLAG_RUNBOOK)
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


GOOD = """
listen: 127.0.0.1:0
webhook: {token_env: TEST_SCALER_TOKEN}
runbooks_dir: runbooks
journal: state/journal.jsonl
audit: state/audit.jsonl
triggers:
  - {name: r, match: {alertname: RegionDown}, runbook: region-failover, auto: true,
     params: {failed_region: "{{ labels.region }}"}}
"""


def test_serve_config_resolves_paths_and_reads_the_token(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SCALER_TOKEN", TOKEN + "\n")
    cfg, token = load_serve_config(_config(tmp_path, GOOD))
    assert token == TOKEN
    assert cfg.journal == tmp_path / "state" / "journal.jsonl" and cfg.runbooks_dir == tmp_path / "runbooks"
    assert TOKEN not in repr(cfg)


def test_token_file_and_webhook_repr(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = _config(tmp_path, GOOD.replace("token_env: TEST_SCALER_TOKEN", "token_file: token"))
    cfg, token = load_serve_config(path)
    assert token == TOKEN and cfg.webhook.token_file == tmp_path / "token"
    assert TOKEN not in repr(Webhook(token=token, submit=lambda p: []))


@pytest.mark.parametrize(
    ("edit", "env", "message"),
    [
        (lambda t: t, None, "webhook.token_env: environment variable TEST_SCALER_TOKEN is not set"),
        (lambda t: t, "short", "webhook.token_env: token has 5 characters, need >= 16"),
        (lambda t: t.replace("token_env: TEST_SCALER_TOKEN", "token_file: missing.txt"), None,
         "webhook.token_file: cannot read"),
        (lambda t: t.replace("{token_env: TEST_SCALER_TOKEN}", "{}"), TOKEN,
         "webhook: set exactly one of token_env or token_file"),
        (lambda t: t.replace("127.0.0.1:0", "localhost"), TOKEN, "listen: expected host:port"),
        (lambda t: t.replace("runbooks_dir: runbooks", "runbooks_dir: nowhere"), TOKEN,
         "runbooks_dir: "),
        (lambda t: t.replace("auto: true", "auto: maybe"), TOKEN, "triggers[0].auto: Input should be"),
        (lambda t: t + "  - {name: r, match: {a: b}, runbook: region-failover}\n", TOKEN,
         "duplicate rule name"),
        (lambda t: t.replace("journal:", "jurnal:"), TOKEN, "journal: Field required"),
        (lambda t: t.replace("{token_env: TEST_SCALER_TOKEN}", "{token_env: TEST_SCALER_TOKEN, path: /metrics}"),
         TOKEN, "webhook.path: /metrics is already served"),
    ],
    ids=["env-unset", "token-short", "token-file-missing", "no-token-source", "bad-listen", "no-runbooks-dir",
         "bad-bool", "duplicate-rule", "typo", "path-taken"],
)
def test_bad_serve_config_exits_2_naming_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit, env: str | None, message: str
) -> None:
    monkeypatch.delenv("TEST_SCALER_TOKEN", raising=False)
    if env is not None:
        monkeypatch.setenv("TEST_SCALER_TOKEN", env)
    path = _config(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as e:
        load_serve_config(path)
    assert str(path) in str(e.value) and message in str(e.value)

    cli = typer.Typer()
    cli.command()(serve)
    result = CliRunner().invoke(cli, [str(path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    if env:
        assert env not in result.output


def test_token_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\xff\xfe" + TOKEN.encode())
    path = _config(tmp_path, GOOD.replace("token_env: TEST_SCALER_TOKEN", "token_file: token"))
    message = f"webhook.token_file: {tmp_path / 'token'} is not UTF-8 text"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_serve_config(path)

    cli = typer.Typer()
    cli.command()(serve)
    result = CliRunner().invoke(cli, [str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output and message in result.output
    assert "Traceback" not in result.output and TOKEN not in result.output


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{name: r, match: {a: b}, runbook: nope}", "triggers[0].runbook: no runbook 'nope' in"),
        ("{name: r, match: {a: b}, runbook: region-failover, params: {failed_region: x, falg: y}}",
         "triggers[0].params.falg: runbook 'region-failover' has no parameter 'falg'"),
        ("{name: r, match: {a: b}, runbook: region-failover}",
         "triggers[0].params: runbook 'region-failover' needs parameter 'failed_region'"),
        ("{name: r, match: {a: b}, runbook: region-failover, params: {failed_region: x}, "
         "on_resolved: {runbook: gone}}", "triggers[0].on_resolved.runbook: no runbook 'gone'"),
    ],
    ids=["unknown-runbook", "unknown-param", "missing-param", "unknown-recovery-runbook"],
)
def test_rules_must_fit_their_runbooks_before_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      rule: str, message: str) -> None:
    monkeypatch.setenv("TEST_SCALER_TOKEN", TOKEN)
    path = _config(tmp_path, GOOD.split("triggers:")[0] + f"triggers:\n  - {rule}\n")
    cli = typer.Typer()
    cli.command()(serve)
    result = CliRunner().invoke(cli, [str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and message in result.output
    assert "listening" not in result.output


# -- limits from the serve config -------------------------------------------------------------------------


def test_the_serve_configs_limits_default_to_the_servers_own():
    assert LimitsSection().limits() == Limits()


def test_limits_in_the_serve_config_reach_the_running_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s header deadline from the config: a client that sends half a request line is answered 408 after about
    a second, where the default would wait 5."""
    monkeypatch.setenv("TEST_SCALER_TOKEN", TOKEN)
    text = GOOD + "limits: {header_timeout: 1s, max_connections: 64, dispatch_threads: 2}\n"
    cfg, token = load_serve_config(_config(tmp_path, text))
    assert cfg.limits.limits() == Limits(header_timeout=1.0, max_connections=64, dispatch_threads=2)
    with serving(cfg, token) as up:
        assert up.server.limits == cfg.limits.limits()
        with socket.create_connection((up.server.host, up.server.port), timeout=10) as s:
            started = time.monotonic()
            s.sendall(b"GET /healthz HT")
            s.settimeout(10)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and 0.5 <= waited < 4, (answer[:80], waited)


@pytest.mark.parametrize(
    ("limits", "field"),
    [("{max_connections: 0}", "limits.max_connections"), ("{header_timeout: 1h}", "limits.header_timeout"),
     ("{dispatch_threads: 1000}", "limits.dispatch_threads"), ("{backlog: -1}", "limits.backlog"),
     ("{keep_alive: 0s}", "limits.keep_alive"), ("{max_conections: 5}", "limits.max_conections")],
    ids=["no-connections", "header-deadline-an-hour", "too-many-threads", "negative-backlog", "no-keep-alive", "typo"],
)
def test_limits_out_of_bounds_are_a_config_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: str, field: str
) -> None:
    monkeypatch.setenv("TEST_SCALER_TOKEN", TOKEN)
    path = _config(tmp_path, GOOD + f"limits: {limits}\n")
    with pytest.raises(ConfigError) as e:
        load_serve_config(path)
    assert str(path) in str(e.value) and field in str(e.value)
