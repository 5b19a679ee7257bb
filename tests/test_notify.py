"""Notification channels: the registry of kinds, routing by severity, the alert Alertmanager is sent, the
notifier's queue, a chat webhook and an Alertmanager API on 127.0.0.1, and email through a real SMTP server
(aiosmtpd) over plain SMTP, STARTTLS and implicit TLS."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from scaler.errors import ConfigError, Problem
from scaler.notify import Channel, ChannelConfig, Message, Notifier, NotifyContext, NotifyError
from scaler.notify.alertmanager import HOLD, AlertmanagerConfig, alert
from scaler.notify.base import iso
from scaler.notify.registry import CHANNELS, DEFAULT
from scaler.notify.slack import SlackConfig
from scaler.notify.smtp import EmailConfig, subject
from scaler.registry import by_kind
from tests.support.alertmanager import free_port
from tests.support.live import ChatReceiver
from tests.support.smtp import smtp_server

T0 = 1_750_000_000.0
WEB = {"alertname": "errors-critical", "severity": "critical", "policy": "web", "target": "web", "action": "failover"}


def firing(labels: dict[str, str] = WEB, *, at: float = T0, severity: str | None = None) -> Message:
    return Message(severity or labels["severity"], "health rule errors-critical firing", "web/web: error_rate 0.2",
                   {"policy": "web", "target": "web"}, status="firing", labels=dict(labels), since=at, at=at)


def resolved(labels: dict[str, str] = WEB, *, since: float = T0, at: float = T0 + 300) -> Message:
    return Message("info", "health rule errors-critical resolved", "web/web: error_rate 0.01",
                   {"policy": "web", "target": "web"}, status="resolved", labels=dict(labels), since=since, at=at)


def notice(severity: str = "info") -> Message:
    return Message(severity, "scaled aws-asg:us-east-1/web", "3 -> 5 replicas (METRIC_UP)", {"policy": "web"}, at=T0)


def parse(entry: dict[str, Any]) -> tuple[ChannelConfig | None, list[Problem]]:
    problems: list[Problem] = []
    return by_kind(CHANNELS, entry, where="notify[0]", problems=problems, default=DEFAULT), problems


# --- the registry and the config of each kind ---------------------------------------------------------------


def test_every_channel_kind_is_a_strict_described_model_of_its_own_kind() -> None:
    assert DEFAULT in CHANNELS
    for kind, model in CHANNELS.items():
        assert issubclass(model, ChannelConfig) and model.model_fields["kind"].default == kind
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
        assert [f for f, info in model.model_fields.items() if not info.description] == [], model.__name__
        assert "build" in vars(model), model.__name__


MAIL = {"kind": "email", "name": "mail", "host": "smtp.example.com", "from": "scaler@example.com",
        "to": ["oncall@example.com"]}
CONFIGS = [
    ("no kind is the chat webhook, as before kinds", {"name": "team", "url_env": "HOOK"}, "slack", []),
    ("alertmanager with a bearer token", {"kind": "alertmanager", "name": "am", "url": "https://am:9093/",
                                          "bearer_token_env": "AM_TOKEN"}, "alertmanager", []),
    ("email with a login over STARTTLS", {**MAIL, "username": "scaler", "password_env": "SMTP_PW"}, "email", []),
    ("an unknown kind names the kinds", {"kind": "pager", "name": "x"}, None,
     [("notify[0].kind", "expected one of alertmanager, email, slack, got 'pager'")]),
    ("a chat webhook needs its URL's place", {"name": "team"}, None,
     [("notify[0]", "set exactly one of url_env or url_file")]),
    ("credentials never in an Alertmanager URL", {"kind": "alertmanager", "name": "am", "url": "http://u:p@am:9093"},
     None, [("notify[0].url", "put credentials in basic_auth or bearer_token_*, not in the URL")]),
    ("one way to authenticate", {"kind": "alertmanager", "name": "am", "url": "http://am:9093",
                                 "bearer_token_env": "T", "basic_auth": {"username": "u", "password_env": "P"}},
     None, [("notify[0]", "set at most one of bearer_token_env, bearer_token_file, basic_auth (got "
             "bearer_token_env, basic_auth)")]),
    ("no password in the clear", {**MAIL, "security": "none", "username": "s", "password_env": "P"}, None,
     [("notify[0]", "logging in over a plain connection sends the password in the clear: use "
                    "security starttls or tls")]),
    ("a login needs a password", {**MAIL, "username": "s"}, None,
     [("notify[0]", "username and a password (password_env or password_file) go together")]),
    ("no header injection through an address", {**MAIL, "to": ["a@example.com\nBcc: x@evil.example"]}, None,
     [("notify[0].to", "expected an email address, got 'a@example.com\\nBcc: x@evil.example'")]),
    ("severities are known ones", {"name": "team", "url_env": "HOOK", "severities": ["page"]}, None,
     [("notify[0].severities", "expected some of info, warning, critical; got ['page']")]),
]


@pytest.mark.parametrize(("entry", "kind", "problems"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_a_notify_entry_is_typed_by_its_kind_with_every_problem_named(entry, kind, problems) -> None:
    typed, found = parse(entry)
    assert [(p.where, p.what) for p in found] == problems
    assert (typed.kind if typed else None) == kind


def test_building_reads_each_secret_and_names_the_field_when_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("am-s3cr3t-token\n")
    am = AlertmanagerConfig(name="am", url="http://am:9093", bearer_token_file=Path("token"))
    channel = am.build(NotifyContext(base_dir=tmp_path))
    assert channel._headers == {"Authorization": "Bearer am-s3cr3t-token"}
    assert "s3cr3t" not in repr(channel)
    mail = EmailConfig.model_validate({**MAIL, "username": "s", "password_env": "SMTP_PW"})
    with pytest.raises(ConfigError) as caught:
        mail.build(NotifyContext(environ={}))
    assert [(p.where, p.what) for p in caught.value.problems] == [
        ("password_env", "environment variable SMTP_PW is not set")]


# --- routing ---------------------------------------------------------------------------------------------


class Recording(Channel):
    def __init__(self, name: str, severities: set[str], fail: bool = False):
        super().__init__(name, frozenset(severities))
        self.got: list[Message] = []
        self.fail = fail

    def send(self, message: Message, *, now: float) -> None:
        if self.fail:
            raise NotifyError("HTTP 500", provider="test")
        self.got.append(message)


ROUTES = [
    # (id, channel severities, message, delivered)
    ("critical reaches the paging channel", {"critical"}, firing(), True),
    ("a warning skips it", {"critical"}, firing({**WEB, "severity": "warning"}), False),
    ("a critical condition's end reaches where its start went, though it reads as info", {"critical"}, resolved(),
     True),
    ("a warning's end does not reach a critical-only channel", {"critical"},
     resolved({**WEB, "severity": "warning"}), False),
    ("an info notice reaches an info channel", {"info"}, notice(), True),
    ("an info notice skips the default channel", {"warning", "critical"}, notice(), False),
]


@pytest.mark.parametrize(("severities", "message", "delivered"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_each_channel_gets_the_severities_it_lists(severities, message, delivered) -> None:
    channel = Recording("c", severities)
    assert channel.wants(message) is delivered


def test_alertmanager_takes_conditions_only_never_one_off_notices() -> None:
    am = AlertmanagerConfig(name="am", url="http://am:9093", severities=["info", "warning", "critical"]).build(
        NotifyContext())
    assert am.wants(firing()) and am.wants(resolved())
    assert not am.wants(notice())  # "scaled web 3 -> 5" has no end for Alertmanager to pair with


def test_the_notifier_routes_labels_and_counts_and_a_failing_channel_costs_only_itself(caplog) -> None:
    pager, team, broken = Recording("pager", {"critical"}), Recording("team", {"warning", "critical"}), \
        Recording("broken", {"critical"}, fail=True)
    notifier = Notifier([pager, team, broken], labels=lambda labels: {"runbook": "region-failover"})
    with caplog.at_level(logging.WARNING):
        for m in (firing(), firing({**WEB, "severity": "warning", "target": "api"}), notice(), resolved()):
            notifier.send(m)
        assert notifier.flush(5)
    notifier.close()
    assert [(m.status, m.labels["severity"]) for m in pager.got] == [("firing", "critical"), ("resolved", "critical")]
    assert [m.labels["target"] for m in team.got] == ["web", "api", "web"]
    assert {m.labels["runbook"] for m in team.got} == {"region-failover"}  # the same on start and end
    assert (notifier.sent, notifier.failed) == (5, 2)
    assert [r.getMessage() for r in caplog.records] == ["notification to broken failed: HTTP 500"] * 2


def test_a_full_queue_drops_the_newest_and_counts_it() -> None:
    taken, release = threading.Event(), threading.Event()

    class Slow(Recording):
        def send(self, message: Message, *, now: float) -> None:
            taken.set()
            release.wait(5)
            super().send(message, now=now)

    slow = Slow("slow", {"critical"})
    notifier = Notifier([slow], capacity=2)
    notifier.send(firing())
    assert taken.wait(5)  # the thread is busy with the first one
    for _ in range(4):  # two wait in the queue, two find it full
        notifier.send(firing())
    release.set()
    notifier.close()
    assert (len(slow.got), notifier.sent, notifier.failed) == (3, 3, 2)


# --- what Alertmanager is sent ---------------------------------------------------------------------------


def test_an_alert_has_the_same_labels_firing_and_resolved_and_ends_when_resolved() -> None:
    start = alert(firing(), now=T0 + 1, hold=240, labels={"cluster": "prod", "severity": "ignored"})
    end = alert(resolved(), now=T0 + 301, hold=240, labels={"cluster": "prod", "severity": "ignored"})
    assert start["labels"] == end["labels"] == {"cluster": "prod", **WEB}  # the message's own labels win
    assert start["annotations"] == {"summary": "health rule errors-critical firing",
                                    "description": "web/web: error_rate 0.2", "policy": "web", "target": "web"}
    # firing: it began at `since` and holds for 240 s from the post (re-posting extends it)
    assert (start["startsAt"], start["endsAt"]) == (iso(T0), iso(T0 + 241))
    # resolved: it ended when the tick said so
    assert (end["startsAt"], end["endsAt"]) == (iso(T0), iso(T0 + 300))
    assert iso(T0) == "2025-06-15T15:06:40.000Z"


def test_alerts_are_posted_again_every_resend_while_firing_and_for_one_hold_after_they_resolve(monkeypatch) -> None:
    am = AlertmanagerConfig(name="am", url="http://am:9093", resend="1m").build(NotifyContext())
    posts: list[list[dict]] = []
    monkeypatch.setattr(am, "_post", posts.append)
    assert am.due(T0) is None  # nothing said: nothing to repeat
    am.send(firing(), now=T0)
    assert am.due(T0) == 60 and am.due(T0 + 45) == 15
    # t+60: the firing alert again, now held until t+60+240
    am.resend(T0 + 60)
    assert [(a["endsAt"]) for a in posts[-1]] == [iso(T0 + 60 + HOLD * 60)]
    # t+90: it resolves; the resolve goes out now and with every re-post until t+90+240, when the last firing
    # post's hold has run out anyway (so a resolve Alertmanager saw too early, or never, still sticks)
    am.send(resolved(at=T0 + 90), now=T0 + 90)
    assert posts[-1][0]["endsAt"] == iso(T0 + 90) and am.firing == 0 and am.due(T0 + 90) == 30
    for t in (120, 180, 240, 300):
        am.resend(T0 + t)
        assert [(a["startsAt"], a["endsAt"]) for a in posts[-1]] == [(iso(T0), iso(T0 + 90))]
    am.resend(T0 + 360)
    assert len(posts) == 7 and am.due(T0 + 360) is None  # t+360: nothing left to say


def test_a_firing_alert_whose_post_failed_goes_out_with_the_next_resend(monkeypatch) -> None:
    am = AlertmanagerConfig(name="am", url="http://am:9093").build(NotifyContext())
    calls: list[list[dict]] = []

    def post(bodies: list[dict]) -> None:
        calls.append(bodies)
        if len(calls) == 1:
            raise NotifyError("ConnectionRefusedError", provider="alertmanager")

    monkeypatch.setattr(am, "_post", post)
    with pytest.raises(NotifyError):
        am.send(firing(), now=T0)
    am.resend(T0 + 60)
    assert [b["labels"]["alertname"] for b in calls[1]] == ["errors-critical"]


def test_posts_go_to_the_v2_api_with_the_credential_which_is_never_logged(caplog, monkeypatch) -> None:
    receiver = ChatReceiver()
    monkeypatch.setenv("AM_PASSWORD", "am-pa55word")
    try:
        config = {"kind": "alertmanager", "name": "am", "url": receiver.url.removesuffix("/hook") + "/prefix",
                  "basic_auth": {"username": "scaler", "password_env": "AM_PASSWORD"}}
        am = AlertmanagerConfig.model_validate(config).build(NotifyContext())
        am.send(firing(), now=T0)
    finally:
        receiver.close()
    ((path, headers),) = receiver.requests
    assert path == "/prefix/api/v2/alerts"
    assert headers["Authorization"] == "Basic c2NhbGVyOmFtLXBhNTV3b3Jk"  # scaler:am-pa55word
    assert receiver.posts[0][0]["labels"] == WEB
    # Alertmanager gone: the failure names the channel and the kind of failure, never the credential
    dead = AlertmanagerConfig.model_validate({**config, "url": f"http://127.0.0.1:{free_port()}"})
    notifier = Notifier([dead.build(NotifyContext())])
    with caplog.at_level(logging.WARNING):
        notifier.send(firing())
        notifier.close()
    assert [r.getMessage() for r in caplog.records] == ["notification to am failed: ConnectionRefusedError"]
    assert "pa55" not in caplog.text and notifier.failed == 1


def test_the_chat_webhook_posts_a_colored_message() -> None:
    receiver = ChatReceiver()
    try:
        channel = SlackConfig(name="team", url_env="HOOK").build(NotifyContext(environ={"HOOK": receiver.url}))
        channel.send(firing(), now=T0)
    finally:
        receiver.close()
    (post,) = receiver.posts
    assert post["text"] == "[CRITICAL] health rule errors-critical firing: web/web: error_rate 0.2"
    assert post["attachments"][0]["color"] == "#a30200"


# --- email through a real SMTP server ----------------------------------------------------------------------

PASSWORD = "smtp-pa55word-7"
MAILS = [
    # (id, server security, users, channel options)
    ("plain relay, no login", "none", None, {"security": "none", "port": None}),
    ("STARTTLS with login", "starttls", {"scaler": PASSWORD}, {"security": "starttls", "username": "scaler",
                                                               "password_env": "SMTP_PW"}),
    ("implicit TLS with login", "tls", {"scaler": PASSWORD}, {"security": "tls", "username": "scaler",
                                                              "password_env": "SMTP_PW"}),
]


def mail_channel(server, pki, **options):
    config = {"kind": "email", "name": "team-mail", "host": "127.0.0.1", "port": server.port,
              "from": "scaler <scaler@example.com>", "to": ["oncall@example.com", "team@example.com"], **options}
    if pki is not None:
        config["ca_file"] = pki.ca.name  # relative: next to the config file
    config = {k: v for k, v in config.items() if v is not None} | {"port": server.port}
    return EmailConfig.model_validate(config).build(
        NotifyContext(base_dir=pki.ca.parent if pki else None, environ={"SMTP_PW": PASSWORD}))


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd: implicit TLS is TLS too
@pytest.mark.parametrize(("security", "users", "options"), [m[1:] for m in MAILS], ids=[m[0] for m in MAILS])
def test_a_mail_arrives_with_sender_recipients_subject_and_body(tmp_path, caplog, security, users, options) -> None:
    with smtp_server(tmp_path, security=security, users=users) as (server, pki):
        channel = mail_channel(server, pki, **options)
        notifier = Notifier([channel])
        with caplog.at_level(logging.DEBUG):
            notifier.send(firing())
            notifier.send(resolved())
            notifier.close()
    assert notifier.sent == 2
    start, end = server.received
    assert start.mail_from == "scaler@example.com"
    assert start.rcpt_tos == ("oncall@example.com", "team@example.com")
    assert (start.tls, start.login) == (security != "none", users and "scaler")
    mail = start.message
    assert (mail["From"], mail["To"]) == ("scaler <scaler@example.com>", "oncall@example.com, team@example.com")
    assert mail["Subject"] == "[scaler] CRITICAL health rule errors-critical firing"
    assert mail["Date"] == "Sun, 15 Jun 2025 15:06:40 -0000"
    assert mail.get_content().splitlines() == [
        "web/web: error_rate 0.2", "", "status: firing since 2025-06-15T15:06:40.000Z", "severity: critical",
        "policy: web", "target: web", "alertname: errors-critical", "action: failover",
        "at: 2025-06-15T15:06:40.000Z"]
    assert end.message["Subject"] == "[scaler] RESOLVED health rule errors-critical resolved"
    assert PASSWORD not in caplog.text


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
def test_a_refused_login_an_unknown_ca_and_a_server_without_starttls_each_fail_without_the_password(
        tmp_path) -> None:
    with smtp_server(tmp_path / "a", security="starttls", users={"scaler": "another-password"}) as (server, pki):
        with pytest.raises(NotifyError) as refused:
            mail_channel(server, pki, username="scaler", password_env="SMTP_PW").send(firing(), now=T0)
        assert server.refused_logins >= 1 and not server.received  # smtplib tries each mechanism
    assert str(refused.value) == "SMTP 535 (SMTPAuthenticationError)" and not refused.value.transient
    with smtp_server(tmp_path / "b", security="starttls") as (server, pki):
        with pytest.raises(NotifyError) as unknown:
            mail_channel(server, None).send(firing(), now=T0)  # the system CAs do not know the test CA
    assert str(unknown.value) == "SSLCertVerificationError"
    with smtp_server(tmp_path / "c", security="none") as (server, _):
        with pytest.raises(NotifyError) as plain:
            mail_channel(server, None).send(firing(), now=T0)  # starttls by default: never falls back to plain
    assert str(plain.value) == "SMTPNotSupportedError" and not server.received
    assert PASSWORD not in str(refused.value) + str(unknown.value) + str(plain.value)


def test_a_subject_is_one_line_whatever_the_title_holds() -> None:
    m = Message("warning", "holding web\r\nBcc: x@evil.example", "no data", status="firing")
    assert subject(m, "[scaler]") == "[scaler] WARNING holding web Bcc: x@evil.example"
