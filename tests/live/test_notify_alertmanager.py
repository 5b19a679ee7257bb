"""End to end: scaler's conditions go to a real Alertmanager whose route tree does the plans' routing
(critical to the pager and the team, warning to the team only), and what its webhook receivers on 127.0.0.1
get is checked: the labels, firing, then resolved. Once from the notifier itself, once from the live loop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaler.clock import FakeClock
from scaler.live.health import HealthRule
from scaler.live.loop import Group, Loop
from scaler.notify import Message, Notifier, NotifyContext
from scaler.notify.alertmanager import AlertmanagerConfig
from tests.conftest import make_policy
from tests.support.alertmanager import Alertmanager, running_alertmanager
from tests.support.fake_live import FakeLease, FakeSource, FakeTarget, MemoryStore
from tests.support.live import ChatReceiver, wait_until

pytestmark = pytest.mark.e2e


def routes(pager: ChatReceiver, team: ChatReceiver) -> dict:
    """The route tree docs/live-loop.md shows: critical pages and tells the team, warning tells the team."""
    hook = {"send_resolved": True}
    return {
        "route": {"receiver": "team", "group_by": ["alertname", "policy", "target"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
                             {"matchers": ['severity=~"warning|critical"'], "receiver": "team"}]},
        "receivers": [{"name": "pager", "webhook_configs": [{"url": pager.url, **hook}]},
                      {"name": "team", "webhook_configs": [{"url": team.url, **hook}]}],
    }


@pytest.fixture
def receivers() -> Iterator[tuple[ChatReceiver, ChatReceiver]]:
    pager, team = ChatReceiver(), ChatReceiver()
    try:
        yield pager, team
    finally:
        pager.close()
        team.close()


def delivered(receiver: ChatReceiver) -> list[tuple[str, str, str]]:
    """(status, alertname, target) of every alert in every notification the receiver got, in order."""
    return [(a["status"], a["labels"]["alertname"], a["labels"].get("target", "")) for p in receiver.posts
            for a in p["alerts"]]


def channel(am: Alertmanager, **over) -> AlertmanagerConfig:
    return AlertmanagerConfig.model_validate({"kind": "alertmanager", "name": "am", "url": am.url,
                                              "labels": {"cluster": "test"}, **over})


def test_critical_pages_and_tells_the_team_warning_tells_the_team_and_both_resolve(
        tmp_path: Path, receivers: tuple[ChatReceiver, ChatReceiver]) -> None:
    pager, team = receivers
    now = time.time()
    critical = {"alertname": "errors-critical", "severity": "critical", "policy": "web", "target": "web",
                "action": "failover"}
    warning = {"alertname": "errors-rollback", "severity": "warning", "policy": "web", "target": "api",
               "action": "rollback"}
    with running_alertmanager(tmp_path / "am", routes(pager, team)) as am:
        notifier = Notifier([channel(am).build(NotifyContext())],
                            labels=lambda labels: {"runbook": f"region-{labels['action']}"})
        try:
            notifier.send(Message("critical", "health rule errors-critical firing", "web/web: error_rate 0.2",
                                  status="firing", labels=critical, since=now - 30, at=now))
            notifier.send(Message("warning", "health rule errors-rollback firing", "web/api: error_rate 0.06",
                                  status="firing", labels=warning, since=now - 300, at=now))
            notifier.send(Message("info", "scaled fake:web", "3 -> 5 replicas", labels={"alertname": "ScalerScaled",
                                  "severity": "info", "policy": "web", "target": "web"}, at=now))
            wait_until(lambda: len(delivered(team)) >= 2 and delivered(pager), what="the firing alerts", timeout=30)
            # t+: the critical condition ends; the same labels resolve it
            notifier.send(Message("info", "health rule errors-critical resolved", "web/web: error_rate 0.01",
                                  status="resolved", labels=critical, since=now - 30, at=time.time()))
            wait_until(lambda: ("resolved", "errors-critical", "web") in delivered(pager)
                       and ("resolved", "errors-critical", "web") in delivered(team), what="the resolve", timeout=30)
            assert notifier.flush(5) and (notifier.sent, notifier.failed) == (3, 0)
        finally:
            notifier.close()
        alerts = {a["labels"]["alertname"]: a for a in am.alerts()}
    assert delivered(pager) == [("firing", "errors-critical", "web"), ("resolved", "errors-critical", "web")]
    assert sorted(delivered(team)) == [("firing", "errors-critical", "web"), ("firing", "errors-rollback", "api"),
                                       ("resolved", "errors-critical", "web")]
    first = pager.posts[0]
    assert first["receiver"] == "pager" and first["status"] == "firing"
    (sent,) = first["alerts"]
    assert sent["labels"] == {**critical, "cluster": "test", "runbook": "region-failover"}
    assert sent["annotations"] == {"summary": "health rule errors-critical firing",
                                   "description": "web/web: error_rate 0.2"}
    assert sent["startsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now - 30)))
    (end,) = pager.posts[-1]["alerts"]
    assert end["status"] == "resolved" and end["fingerprint"] == sent["fingerprint"]  # the same alert
    # Alertmanager's own view: only the warning still fires (the critical one resolved, the scale notice never
    # went to Alertmanager)
    assert set(alerts) == {"errors-rollback"} and alerts["errors-rollback"]["status"]["state"] == "active"


def test_a_health_rule_of_the_live_loop_fires_and_resolves_in_alertmanager(
        tmp_path: Path, receivers: tuple[ChatReceiver, ChatReceiver]) -> None:
    pager, team = receivers
    errors = {"name": "errors", "query": "errors", "kind": "error_rate", "target": 0.01, "scale_up_above": 0.05,
              "scale_down_below": 0.01, "window": {"type": "last"}}
    cpu = {"name": "cpu", "query": "cpu", "target": 70, "window": {"type": "last"}}
    rule = HealthRule.model_validate({"name": "errors-critical", "metric": "errors", "above": 0.1,
                                      "labels": {"action": "failover"}})
    clock = FakeClock(time.time())  # Alertmanager compares startsAt and endsAt with its own clock
    source = FakeSource({"cpu": {"web": 60.0}, "errors": {"web": 0.3}})
    group = Group(policy=make_policy(name="web", metrics=[cpu, errors]), target_label="service", labels=("web",),
                  targets=(FakeTarget("web"),))
    group.bind([rule])
    with running_alertmanager(tmp_path / "am", routes(pager, team)) as am:
        notifier = Notifier([channel(am).build(NotifyContext())], clock=clock)
        loop = Loop([group], source=source, store=MemoryStore(), lease=FakeLease(), clock=clock, notifier=notifier)
        try:
            loop.tick(group)  # t+0: errors 0.3 > 0.1 -> firing
            wait_until(lambda: delivered(pager), what="the firing alert", timeout=30)
            clock.t = time.time()  # the next tick, on the wall clock as Alertmanager's
            source.values["errors"] = {"web": 0.0}
            loop.tick(group)  # errors 0 -> resolved
            wait_until(lambda: len(delivered(pager)) >= 2, what="the resolved alert", timeout=30)
        finally:
            notifier.close()
            loop.close()
    assert delivered(pager) == [("firing", "errors-critical", "web"), ("resolved", "errors-critical", "web")]
    start, end = (p["alerts"][0] for p in pager.posts)
    assert start["labels"] == end["labels"] == {"alertname": "errors-critical", "severity": "critical",
                                                "policy": "web", "target": "web", "action": "failover",
                                                "cluster": "test"}
    assert start["annotations"]["description"] == "web/web: errors 0.3: errors > 0.1"
    assert end["endsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(clock.now())))
