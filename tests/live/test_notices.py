"""What the loop tells people, tick by tick on a fake clock: each condition once when it starts and once when it
ends, both under the same labels (so Alertmanager resolves what it paged for); a scale is a one-off notice."""

from __future__ import annotations

from scaler.clock import FakeClock
from scaler.live.health import HealthRule
from scaler.live.loop import Group, Loop
from scaler.notify import Message
from tests.conftest import make_policy
from tests.support.fake_live import FakeLease, FakeSource, FakeTarget, MemoryStore, denied

CPU = {"name": "cpu", "query": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
       "window": {"type": "last"}}
ERRORS = {"name": "errors", "query": "errors", "kind": "error_rate", "target": 0.01, "scale_up_above": 0.05,
          "scale_down_below": 0.01, "window": {"type": "last"}}


class Said:
    """A notifier that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, message: Message) -> None:
        self.messages.append(message)

    def take(self) -> list[tuple[str, str | None, str]]:
        out = [(m.title, m.status, m.severity) for m in self.messages]
        self.messages.clear()
        return out


def setup(*, metrics=(CPU,), rules=(), target=None):
    clock = FakeClock()
    target = target or FakeTarget("web")
    group = Group(policy=make_policy(name="web", metrics=list(metrics), interval=15), target_label="service",
                  labels=("web",), targets=(target,))
    group.bind(rules)
    source = FakeSource({"cpu": {"web": 60.0}, "errors": {"web": 0.0}})
    said = Said()
    loop = Loop([group], source=source, store=MemoryStore(), lease=FakeLease(), clock=clock, notifier=said)
    return loop, group, source, target, clock, said


def test_a_failing_write_is_announced_once_and_its_end_under_the_same_labels():
    loop, g, source, target, clock, said = setup(target=FakeTarget("web", fail_writes=[denied(), denied()]))
    source.values["cpu"] = {"web": 140.0}  # 140 % on 3 against 70 -> 6
    loop.tick(g)
    (start,) = said.messages
    assert (start.title, start.status, start.severity) == ("cannot scale fake:web", "firing", "critical")
    said.take()
    clock.advance(15)
    loop.tick(g)  # t+15: fails again: nothing new to say
    assert said.take() == []
    clock.advance(15)
    loop.tick(g)  # t+30: the write lands
    scaled, end = said.messages
    assert (scaled.title, scaled.status) == ("scaled fake:web", None)  # a notice: no end to pair with
    assert (end.title, end.status, end.severity) == ("can scale fake:web again", "resolved", "info")
    assert end.labels == start.labels == {"alertname": "ScalerCannotScale", "severity": "critical", "policy": "web",
                                          "target": "web"}
    assert (end.since, end.at) == (start.since, clock.now()) and end.routed == "critical"


def test_a_dead_metric_source_is_one_condition_for_the_policy_and_so_is_its_return():
    loop, g, source, _, clock, said = setup()
    source.down = True
    for _ in range(3):  # t+0 .. t+30: said once
        loop.tick(g)
        clock.advance(15)
    (down,) = said.messages
    said.take()
    source.down = False
    loop.tick(g)  # t+45: back
    (back,) = said.messages
    assert (down.title, down.status, back.title, back.status) == (
        "metrics unavailable for web", "firing", "metrics back for web", "resolved")
    assert down.labels == back.labels == {"alertname": "ScalerMetricsUnavailable", "severity": "critical",
                                          "policy": "web"}
    assert back.since == down.since == clock.now() - 45


def test_holding_on_missing_data_starts_and_ends():
    loop, g, source, _, clock, said = setup()
    source.values["cpu"] = {}  # web's series is gone
    loop.tick(g)
    clock.advance(15)
    loop.tick(g)
    assert said.take() == [("holding fake:web", "firing", "warning")]
    source.values["cpu"] = {"web": 60.0}
    clock.advance(15)
    loop.tick(g)
    (end,) = said.messages
    assert (end.title, end.status, end.labels["alertname"], end.routed) == (
        "data back for fake:web", "resolved", "ScalerHoldingOnMissingData", "warning")


def test_a_health_rule_carries_its_labels_and_its_severity_to_the_end():
    rule = HealthRule.model_validate({"name": "errors-rollback", "metric": "errors", "above": 0.05,
                                      "severity": "warning", "labels": {"action": "rollback", "severity": "x"}})
    loop, g, source, _, clock, said = setup(metrics=(CPU, ERRORS), rules=[rule])
    source.values["errors"] = {"web": 0.2}
    loop.tick(g)
    clock.advance(15)
    source.values["errors"] = {"web": 0.0}
    loop.tick(g)
    start, end = [m for m in said.messages if m.title.startswith("health rule")]  # (errors 0.2 also scaled up)
    assert [(m.status, m.severity, m.routed) for m in (start, end)] == [("firing", "warning", "warning"),
                                                                         ("resolved", "info", "warning")]
    # a rule's own label cannot change what names the event: its name, policy, target and severity
    assert start.labels == end.labels == {"action": "rollback", "alertname": "errors-rollback", "policy": "web",
                                          "target": "web", "severity": "warning"}
    assert (start.since, end.since, end.at) == (clock.now() - 15, clock.now() - 15, clock.now())
