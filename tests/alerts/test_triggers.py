"""Trigger rules and dispatch: matching, templates, dedup, approvals and recovery runbooks."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from scaler.alerts.dispatch import Dispatcher, SeenKeys, dispatch
from scaler.alerts.payload import Payload, synthetic_payload
from scaler.alerts.plan import idempotency_key, plan
from scaler.alerts.rules import Rule
from scaler.errors import ConfigError, PermanentError
from scaler.yamlio import validate
from tests.conftest import ROOT
from tests.support.fake_runbooks import FakeRunbookService

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt while an alert still fires


def alert(labels: dict[str, str], *, status: str = "firing", starts: datetime = T0, fp: str = "a1b2c3d4",
          annotations: dict[str, str] | None = None) -> dict:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations or {},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": (starts + timedelta(minutes=5)).isoformat() if status == "resolved" else GO_ZERO_TIME,
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fp,
    }


def payload(*alerts: dict, status: str | None = None) -> Payload:
    return Payload.model_validate({
        "version": "4",
        "receiver": "scaler",
        "status": status or alerts[0]["status"],
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    })


RULES = [
    Rule(name="region-down", match={"alertname": "RegionDown"}, runbook="region-failover",
         params={"failed_region": "{{ labels.region }}", "reason": "{{ annotations.summary }}"}, auto=True,
         on_resolved={"runbook": "region-failback", "params": {"region": "{{ labels.region }}"}}),
    Rule(name="secret-leak", match={"alertname": "SecretLeak"}, runbook="security-lockdown",
         params={"secret": "{{ labels.secret }}"}),
    Rule(name="db-any", match_re={"alertname": "Db.*", "env": "prod|staging"}, runbook="db-restore",
         auto=True),
]


# --- matching ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "rule"),
    [
        ({"alertname": "RegionDown", "region": "us-east-1"}, "region-down"),
        ({"alertname": "SecretLeak", "secret": "db"}, "secret-leak"),
        ({"alertname": "DbCorrupt", "env": "prod"}, "db-any"),
        ({"alertname": "DbCorrupt", "env": "production"}, None),  # regexes are anchored, as in Alertmanager
        ({"alertname": "DbCorrupt"}, None),  # a missing label is "", which prod|staging does not match
        ({"alertname": "HighCPU"}, None),
        ({"alertname": "regiondown"}, None),  # equality is exact
    ],
    ids=["equality", "second-rule", "regex", "regex-anchored", "regex-missing-label", "no-rule", "case"],
)
def test_first_matching_rule(labels: dict[str, str], rule: str | None) -> None:
    labels = {"region": "x", "secret": "s", **labels}
    (item,) = plan(payload(alert(labels)), RULES)
    assert getattr(item, "rule", None) == rule


def test_first_match_wins_over_later_rules() -> None:
    rules = [Rule(name="a", match={"alertname": "X"}, runbook="one"),
             Rule(name="b", match={"alertname": "X"}, runbook="two")]
    (item,) = plan(payload(alert({"alertname": "X"})), rules)
    assert (item.rule, item.runbook) == ("a", "one")


# --- config ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "where", "what"),
    [
        ({"name": "r", "runbook": "x"}, "", "at least one matcher"),
        ({"name": "r", "runbook": "x", "match_re": {"a": "("}}, "match_re", "not a valid regular expression"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ labels.x.y }}"}},
         "params", "unknown template"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ os.system }}"}},
         "params", "unknown template in '{{ os.system }}': use {{ labels.NAME }}, {{ annotations.NAME }}, "
         "{{ status }}, {{ fingerprint }}, {{ startsAt }} or {{ receiver }}"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ labels }}"}},
         "params", "unknown template"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ status.x }}"}},
         "params", "unknown template"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ params.region }}"}},
         "params", "unknown template"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "params": {"p": "{{ labels.region }"}},
         "params", "unknown template"),
        ({"name": "r", "runbook": "x", "match": {"a": "b"}, "autp": True}, "autp", "Extra inputs"),
        ({"name": "r", "runbook": "../etc", "match": {"a": "b"}}, "runbook", "should match pattern"),
    ],
    ids=["no-matcher", "bad-regex", "bad-template", "no-code-in-templates", "label-without-name",
         "field-of-bare-name", "runbook-reference", "unclosed", "typo", "runbook-path"],
)
def test_bad_rules_name_the_field(rule: dict, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(Rule, rule, "serve.yaml")
    (problem,) = e.value.problems
    assert problem.where == where and what in problem.what
    assert str(e.value).startswith("serve.yaml: invalid config")


# --- dispatch ---------------------------------------------------------------------------------------------


def test_auto_rule_starts_now_with_rendered_params_and_key() -> None:
    svc = FakeRunbookService()
    a = alert({"alertname": "RegionDown", "region": "us-east-1"}, annotations={"summary": "probes fail"})
    (out,) = dispatch(payload(a), service=svc, rules=RULES)
    assert (out.result, out.run_id, out.runbook) == ("started", "run-1", "region-failover")
    (run,) = svc.calls
    assert run.params == {"failed_region": "us-east-1", "reason": "probes fail"}
    assert run.status == "succeeded"  # auto: no approval asked
    assert run.trigger.kind == "alertmanager" and run.trigger.who == "alertmanager/scaler"
    assert run.trigger.key == f"alertmanager:a1b2c3d4:{T0.isoformat()}:firing"
    assert "RegionDown firing" in run.trigger.why and "probes fail" in run.trigger.why


def test_approval_rule_creates_a_pending_run_that_approve_completes() -> None:
    svc = FakeRunbookService()
    (out,) = dispatch(payload(alert({"alertname": "SecretLeak", "secret": "db-password"})), service=svc,
                      rules=RULES)
    assert out.result == "pending"
    assert svc.status(out.run_id)[0].status == "waiting"
    # `scaler runbook approve RUN_ID` ends up here
    assert svc.approve(out.run_id, who="alice").status == "succeeded"


def test_resolved_alert_starts_the_recovery_runbook_under_its_own_key() -> None:
    svc = FakeRunbookService()
    labels = {"alertname": "RegionDown", "region": "us-east-1"}
    dispatch(payload(alert(labels, annotations={"summary": "s"})), service=svc, rules=RULES)
    (out,) = dispatch(payload(alert(labels, status="resolved")), service=svc, rules=RULES)
    assert (out.result, out.runbook, out.run_id) == ("pending", "region-failback", "run-2")
    assert svc.calls[1].params == {"region": "us-east-1"}
    assert svc.calls[1].trigger.key.endswith(":resolved")


def test_resolved_without_on_resolved_starts_nothing() -> None:
    svc = FakeRunbookService()
    (out,) = dispatch(payload(alert({"alertname": "SecretLeak", "secret": "s"}, status="resolved")),
                      service=svc, rules=RULES)
    assert (out.result, out.detail) == ("unmatched", "no on_resolved")
    assert svc.calls == []


def test_missing_label_in_a_template_is_an_error_and_starts_nothing() -> None:
    svc = FakeRunbookService()
    (out,) = dispatch(payload(alert({"alertname": "SecretLeak"})), service=svc, rules=RULES)
    assert out.result == "error" and out.detail == "params: alert has no label 'secret'"
    assert svc.calls == []


def test_label_values_are_substituted_verbatim_never_evaluated() -> None:
    svc = FakeRunbookService()
    dispatch(payload(alert({"alertname": "SecretLeak", "secret": "{{ labels.alertname }}"})), service=svc,
             rules=RULES)
    assert svc.calls[0].params == {"secret": "{{ labels.alertname }}"}


def test_label_text_spliced_into_longer_text_is_not_rendered_again() -> None:
    rule = Rule(name="r", match={"alertname": "X"}, runbook="x", params={"p": "got {{ labels.secret }}!"})
    (item,) = plan(payload(alert({"alertname": "X", "secret": "{{ labels.alertname }} }}"})), [rule])
    assert item.params == {"p": "got {{ labels.alertname }} }}!"}


RENDERED = [
    ("label", "{{ labels.region }}", "us-east-1"),
    ("spaces optional", "{{labels.region}}", "us-east-1"),
    ("side by side", "{{ labels.region }}-{{ labels.zone }}", "us-east-1-a"),
    ("in text", "fail over {{ labels.region }} now", "fail over us-east-1 now"),
    ("annotation", "{{ annotations.summary }}", "probes fail"),
    ("alert fields", "{{ status }} {{ fingerprint }} {{ receiver }}", "firing a1b2c3d4 scaler"),
    ("start in utc", "{{ startsAt }}", "2025-03-01T12:00:00+00:00"),
    ("no template", "plain {text}", "plain {text}"),
]


@pytest.mark.parametrize(("value", "want"), [r[1:] for r in RENDERED], ids=[r[0] for r in RENDERED])
def test_params_render_from_the_alert(value: str, want: str) -> None:
    rule = Rule(name="r", match={"alertname": "X"}, runbook="x", params={"p": value})
    a = alert({"alertname": "X", "region": "us-east-1", "zone": "a"}, annotations={"summary": "probes fail"},
              starts=T0.astimezone(timezone(timedelta(hours=2))))
    (item,) = plan(payload(a), [rule])
    assert item.params == {"p": want}


def test_missing_annotation_is_named() -> None:
    rule = Rule(name="r", match={"alertname": "X"}, runbook="x", params={"p": "{{ annotations.summary }}"})
    (out,) = plan(payload(alert({"alertname": "X"})), [rule])
    assert (out.result, out.detail) == ("error", "params: alert has no annotation 'summary'")


# --- dedup ------------------------------------------------------------------------------------------------


def test_redelivery_starts_one_run() -> None:
    svc, seen = FakeRunbookService(), SeenKeys()
    p = payload(alert({"alertname": "RegionDown", "region": "eu-west-1"}, annotations={"summary": "s"}))
    first = dispatch(p, service=svc, rules=RULES, seen=seen)
    again = dispatch(p, service=svc, rules=RULES, seen=seen)
    assert [o.result for o in first + again] == ["started", "duplicate"]
    assert again[0].run_id == first[0].run_id == "run-1"
    assert len(svc.calls) == 1  # the seen-set answered without calling the service


def test_without_the_seen_set_the_journal_key_still_gives_one_run() -> None:
    # A restarted process has an empty seen-set; the key passed to start makes the journal return run 1.
    svc = FakeRunbookService()
    p = payload(alert({"alertname": "RegionDown", "region": "eu-west-1"}, annotations={"summary": "s"}))
    a, b = dispatch(p, service=svc, rules=RULES), dispatch(p, service=svc, rules=RULES)
    assert a[0].run_id == b[0].run_id and len(svc.runs) == 1


def test_a_new_occurrence_of_the_same_alert_runs_again() -> None:
    svc, seen = FakeRunbookService(), SeenKeys()
    labels = {"alertname": "RegionDown", "region": "eu-west-1"}
    dispatch(payload(alert(labels, annotations={"summary": "s"})), service=svc, rules=RULES, seen=seen)
    # t+1h: it fired again after resolving, so startsAt moved
    later = alert(labels, starts=T0 + timedelta(hours=1), annotations={"summary": "s"})
    (out,) = dispatch(payload(later), service=svc, rules=RULES, seen=seen)
    assert out.result == "started" and len(svc.runs) == 2


def test_startsat_in_another_timezone_is_the_same_occurrence() -> None:
    a = payload(alert({"a": "b"})).alerts[0]
    shifted = a.model_copy(update={"startsAt": a.startsAt.astimezone(timezone(timedelta(hours=2)))})
    assert shifted.startsAt.isoformat() != a.startsAt.isoformat()
    assert idempotency_key(a) == idempotency_key(shifted)


def test_a_failed_start_frees_the_key_for_the_next_delivery() -> None:
    svc, seen = FakeRunbookService(fail=PermanentError("runbook missing")), SeenKeys()
    p = payload(alert({"alertname": "RegionDown", "region": "x"}, annotations={"summary": "s"}))
    (out,) = dispatch(p, service=svc, rules=RULES, seen=seen)
    assert out.result == "error" and "runbook missing" in out.detail
    svc.fail = None
    (out,) = dispatch(p, service=svc, rules=RULES, seen=seen)
    assert out.result == "started"


def test_seen_set_is_bounded() -> None:
    seen = SeenKeys(capacity=2)
    for k in ("a", "b", "c"):
        seen.reserve(k)
    assert seen.reserve("a") == (True, None)  # evicted, so new again (the journal still dedups)
    assert seen.reserve("c") == (False, None)


# --- worker-thread dispatch -----------------------------------------------------------------------------


def test_dispatcher_returns_before_the_run_starts_and_dedups_concurrent_deliveries() -> None:
    gate = threading.Event()
    svc = FakeRunbookService(gate=gate)
    d = Dispatcher(service=svc, rules=RULES)
    p = payload(alert({"alertname": "RegionDown", "region": "x"}, annotations={"summary": "s"}))
    results: list[str] = []

    def deliver() -> None:
        results.extend(o.result for o in d.submit(p))

    # An HA pair delivering the same group at the same moment, four times over.
    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["duplicate", "duplicate", "duplicate", "queued"]
    assert svc.calls == []  # still gated: submit did not wait for the runbook
    gate.set()
    assert d.drain(timeout=5)
    assert len(svc.calls) == 1
    d.close()


def test_dispatcher_reports_run_id_of_a_settled_duplicate() -> None:
    svc = FakeRunbookService()
    d = Dispatcher(service=svc, rules=RULES)
    p = payload(alert({"alertname": "SecretLeak", "secret": "s"}))
    d.submit(p)
    d.drain(5)
    (dup,) = d.submit(p)
    assert (dup.result, dup.run_id) == ("duplicate", "run-1")
    d.close()


# --- health rules use the same entry point ---------------------------------------------------------------


def test_health_rule_dispatch_uses_the_same_rules_with_its_own_trigger_kind() -> None:
    svc = FakeRunbookService()
    p = synthetic_payload({"alertname": "RegionDown", "region": "us-west-2"}, {"summary": "3 failed probes"},
                          starts_at=T0)
    (out,) = dispatch(p, service=svc, rules=RULES, kind="health-rule", who="scaler/health")
    assert out.result == "started"
    trigger = svc.calls[0].trigger
    assert (trigger.kind, trigger.who) == ("health-rule", "scaler/health")
    # the same label set always gets the same fingerprint, so repeated health failures dedup too
    again = synthetic_payload({"region": "us-west-2", "alertname": "RegionDown"}, starts_at=T0)
    assert again.alerts[0].fingerprint == p.alerts[0].fingerprint


def test_example_serve_config_fits_the_real_runbooks(tmp_path: Path) -> None:
    from scaler.alerts.fit import check_rules_fit
    from scaler.runbook.service import RunbookService
    from scaler.server.serve import ServeConfig
    from scaler.yamlio import load

    path = ROOT / "examples" / "serve.yaml"
    cfg = load(ServeConfig, path)
    names = {r.match.get("alertname"): (r.runbook, r.auto) for r in cfg.triggers}
    assert names == {"RegionDown": ("region-failover", True), "SecretLeak": ("security-lockdown", False)}
    service = RunbookService(runbooks_dir=path.parent.parent / "runbooks", journal_path=tmp_path / "j.db",
                             audit_path=tmp_path / "audit.jsonl")
    check_rules_fit(cfg.triggers, service, path)  # every runbook exists and takes these parameters


# --- alert contents are data: never read as a secret's env:/file: reference ------------------------------

CANARY = "canary-5e1f-must-never-leave-its-file"


def test_alert_text_is_never_read_as_a_secret_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    import yaml

    from scaler.clock import FakeClock
    from scaler.runbook.service import RunbookService
    from tests.runbook.helpers import web_server

    # A runbook whose secret parameter is the URL it posts to, as the shipped webhook_url parameters are.
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "page.yaml").write_text(yaml.safe_dump({
        "name": "page",
        "parameters": {"url": {"secret": True}},
        "steps": [{"id": "tell", "action": "notify.webhook", "inputs": {"url": "{{ params.url }}", "text": "paged"}}],
    }))
    rules = [
        Rule(name="whole", match={"alertname": "Whole"}, runbook="page", params={"url": "{{ labels.url }}"},
             auto=True),
        Rule(name="spliced", match={"alertname": "Spliced"}, runbook="page",
             params={"url": "{{ labels.kind }}:{{ labels.where }}"}, auto=True),
        Rule(name="noted", match={"alertname": "Noted"}, runbook="page", params={"url": "{{ annotations.hook }}"},
             auto=True),
        Rule(name="pending", match={"alertname": "Pending"}, runbook="page", params={"url": "{{ labels.url }}"}),
        # written in the rule itself, by whoever configures the server: a reference that is read
        Rule(name="configured", match={"alertname": "Configured"}, runbook="page", params={"url": "env:HOOK_URL"},
             auto=True),
    ]
    with web_server() as web:
        secret_file = tmp_path / "hook-url"
        secret_file.write_text(f"{web.url}/hook?k={CANARY}-file\n")
        monkeypatch.setenv("CANARY_HOOK", f"{web.url}/hook?k={CANARY}-env")
        monkeypatch.setenv("HOOK_URL", f"{web.url}/hook?k=configured")
        svc = RunbookService(runbooks_dir=runbooks, journal_path=tmp_path / "state" / "journal.db",
                             audit_path=tmp_path / "state" / "audit.jsonl", clock=FakeClock(), http_timeout=2.0)
        alerts = [
            alert({"alertname": "Whole", "url": f"file:{secret_file}"}, fp="f1"),
            alert({"alertname": "Whole", "url": "env:CANARY_HOOK"}, fp="f2"),
            alert({"alertname": "Spliced", "kind": "env", "where": "CANARY_HOOK"}, fp="f3"),
            alert({"alertname": "Spliced", "kind": "file", "where": str(secret_file)}, fp="f4"),
            alert({"alertname": "Noted"}, annotations={"hook": "env:CANARY_HOOK"}, fp="f5"),
            alert({"alertname": "Configured"}, fp="f6"),
            alert({"alertname": "Pending", "url": "env:CANARY_HOOK"}, fp="f7"),  # last: it holds the scope
        ]
        with caplog.at_level("DEBUG"):
            outcomes = dispatch(payload(*alerts), service=svc, rules=rules)
            by_rule = {o.rule: o for o in outcomes}
            # approving the pending run later (here: in the same process, which holds its value) reads nothing
            approved = svc.approve(by_rule["pending"].run_id, who="alice")

    assert [o.result for o in outcomes] == ["started"] * 6 + ["pending"]
    runs = {r.id: r for r in svc.status()}
    for o in outcomes:
        if o.rule != "configured":
            # "env:CANARY_HOOK" is taken as the URL itself, which is no http(s) URL: the step fails, nothing is sent
            assert runs[o.run_id].status in ("failed", "rolled_back"), o
            assert "only http and https" in (runs[o.run_id].steps[0].error or "")
    assert approved.status in ("failed", "rolled_back")
    assert runs[by_rule["configured"].run_id].status == "succeeded"
    assert len(web.hooks) == 1  # the configured reference's request, and no other
    # the canary appears nowhere: not in an HTTP request, an outcome, the journal, the audit trail or a log line
    seen = [json.dumps(web.hooks), json.dumps(web.hook_headers), json.dumps([o.as_json() for o in outcomes]),
            caplog.text, (tmp_path / "state" / "audit.jsonl").read_text()]
    with sqlite3.connect(tmp_path / "state" / "journal.db") as db:
        seen += list(db.iterdump())
    seen += [repr(r) for r in svc.status()]
    assert not [text for text in seen if CANARY in text]
