"""region-failover while the primary region is really down: every call signed for it fails at a proxy in front
of the moto server (HTTP 503, or the connection reset), Route 53 (global) still answers. The move must finish
on Route 53 and the secondary region alone, and the run must say which best-effort steps failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli.runbook import app
from scaler.clock import FakeClock
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import (
    PRIMARY,
    RUNBOOKS,
    SECONDARY,
    ClientFor,
    Snapshot,
    Web,
    World,
    build_switch,
    failover_params,
    inverted,
    make_service,
    snapshot,
)
from tests.support.moto_server import CREDENTIALS, MotoServer
from tests.support.outage_proxy import Outage, outage_proxy

ONCALL = Trigger(kind="alertmanager", who="pager", why="RegionDown: us-east-1 answers nothing")
# The steps in the failed region: the two that put up the maintenance page and flag fail (best effort); the two
# that would take them down again skip, since nothing was put up.
PUT_UP = ["maintenance_on", "maintenance_flag"]
TAKE_DOWN = ["maintenance_off", "maintenance_flag_off"]
# The move is done, the failed region untouched: no maintenance rule could be added there, the flag is as it was.
MOVED = Snapshot(roles={"east": "SECONDARY", "west": "PRIMARY"}, maintenance_rules=0,
                 rule_priorities=("1", "default"), flag="off", desired=4)


@pytest.fixture
def outage(moto: MotoServer) -> Iterator[Outage]:
    with outage_proxy(moto.url) as proxy:
        yield proxy


@pytest.fixture
def through_outage(tmp_path: Path, clock: FakeClock, outage: Outage) -> RunbookService:
    """A service whose every AWS call goes through the outage proxy."""
    return make_service(tmp_path, endpoint_url=outage.url, clock=clock)


def primary_services(outage: Outage, outcome: str) -> set[str]:
    return {service for (region, service) in outage.calls(outcome) if region == PRIMARY}


@pytest.mark.parametrize("mode", ["503", "reset"], ids=["http-503", "connection-reset"])
def test_failover_finishes_on_the_secondary_while_the_primary_region_is_down(
        through_outage: RunbookService, outage: Outage, server_client: ClientFor, server_world: World, web: Web,
        mode: str) -> None:
    outage.fail(PRIMARY, mode=mode)  # t0: us-east-1 stops answering; Route 53 still does
    run = through_outage.start("region-failover", failover_params(server_world, web), trigger=ONCALL)

    assert run.status == "succeeded", run.error
    assert snapshot(server_client, server_world) == MOVED
    statuses = {s.id: s.status for s in run.steps}
    assert {sid: statuses.pop(sid) for sid in PUT_UP} == dict.fromkeys(PUT_UP, "failed (best effort)")
    assert {sid: statuses.pop(sid) for sid in TAKE_DOWN} == dict.fromkeys(TAKE_DOWN, "skipped")
    assert set(statuses.values()) == {"succeeded"}  # notify, DNS, INSYNC, standby, health, switch (none given)
    # The run says which best-effort steps failed, and why; so does the end notification.
    assert [w.split(":")[0] for w in run.warnings] == PUT_UP
    why = "(HTTP 503) us-east-1 is down" if mode == "503" else "connection failed (ConnectionClosedError)"
    assert all(why in w for w in run.warnings), run.warnings
    assert [h["attachments"][0]["fields"][0]["value"] for h in web.hooks] == ["critical", "warning"]
    assert all(w in json.dumps(web.hooks[1]) for w in run.warnings)
    # Nothing in the primary region answered; the move used only Route 53 and the secondary region.
    assert primary_services(outage, "passed") == {"route53"}
    assert primary_services(outage, mode) == {"elasticloadbalancing", "ssm"}
    assert {service for (region, service) in outage.calls("passed") if region == SECONDARY} == {"autoscaling"}


def test_the_failed_region_costs_each_best_effort_step_its_deadline_at_most(
        through_outage: RunbookService, outage: Outage, server_world: World, web: Web, clock: FakeClock) -> None:
    outage.fail(PRIMARY)
    t0 = clock.t
    run = through_outage.start("region-failover", failover_params(server_world, web), trigger=ONCALL)
    assert run.status == "succeeded", run.error
    for sid in PUT_UP:
        step = run.step(sid)
        assert step.started_at is not None and step.finished_at is not None
        # 5 tries of the first call, 0.2 + 0.4 + 0.8 + 1.6 s (+ jitter) apart: about 3 s, within the 5 s deadline.
        assert 3.0 <= step.finished_at - step.started_at <= 5.0
    # Those retry delays and 2 health-check intervals of 1 s: the rest of the run waits for nothing.
    assert clock.t - t0 < 2 * 3.5 + 2.5


def test_switch_alone_moves_traffic_without_rewriting_records(
        through_outage: RunbookService, outage: Outage, server_client: ClientFor, server_world: World,
        web: Web) -> None:
    switch = build_switch(server_client, server_world)
    outage.fail(PRIMARY)
    params = failover_params(server_world, web, failover_switch=switch.switch, rewrite_records="false")
    run = through_outage.start("region-failover", params, trigger=ONCALL)
    assert run.status == "succeeded", run.error
    # Route 53's checkers move traffic: the gate on the PRIMARY record fails once the switch is inverted.
    assert inverted(server_client, switch.switch) and not inverted(server_client, switch.gate)
    after = snapshot(server_client, server_world)
    assert (after.roles, after.desired) == ({"east": "PRIMARY", "west": "SECONDARY"}, 4)
    assert (run.step("failover").status, run.step("dns_insync").status) == ("skipped", "skipped")
    assert run.step("switch").outputs == {"health_check_id": switch.switch, "previous": False, "inverted": True,
                                          "changed": True, "type": "CALCULATED"}
    assert primary_services(outage, "passed") == {"route53"}


def test_an_endpoint_check_given_as_the_switch_is_refused_before_anything_changes(
        through_outage: RunbookService, outage: Outage, server_client: ClientFor, server_world: World,
        web: Web) -> None:
    # Inverting the endpoint's own check while the endpoint is down would make it healthy: traffic goes back.
    switch = build_switch(server_client, server_world)
    outage.fail(PRIMARY)
    params = failover_params(server_world, web, failover_switch=switch.endpoint, rewrite_records="false")
    run = through_outage.start("region-failover", params, trigger=ONCALL)
    assert run.status == "refused"
    assert run.error is not None and "the failover switch, if given, exists and is a switch" in run.error
    assert not inverted(server_client, switch.endpoint) and web.hooks == []


def test_cli_run_through_the_outage_as_an_operator_would(
        tmp_path: Path, outage: Outage, server_client: ClientFor, server_world: World, web: Web) -> None:
    """`scaler runbook run region-failover ... --endpoint-url PROXY` in a process of its own, on real time."""
    outage.fail(PRIMARY)
    hook = f"{web.url}/hook?token=SECRET-hook-token-123"
    params = failover_params(server_world, web, webhook_url="env:DRILL_HOOK", health_interval="200ms")
    journal = tmp_path / "state" / "journal.db"
    args = [sys.executable, "-m", "scaler", "runbook", "run", "region-failover", "--runbooks", str(RUNBOOKS),
            "--journal", str(journal), "--endpoint-url", outage.url, "--region", PRIMARY, "--why", "INC-1: us-east-1",
            "--json", *[a for k, v in params.items() for a in ("-p", f"{k}={v}")]]
    t0 = time.monotonic()
    done = subprocess.run(args, env=os.environ | CREDENTIALS | {"DRILL_HOOK": hook}, capture_output=True,
                          timeout=120, check=False)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert snapshot(server_client, server_world) == MOVED
    # 2 best-effort steps at about 3 s of retries each, 2 health intervals of 0.2 s, process start-up.
    assert took < 20, f"{took:.1f} s"
    shown = CliRunner().invoke(app, ["status", run["id"], "--journal", str(journal)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line for line in shown.output.splitlines() if line.strip()}
    assert all("failed (best effort)" in lines[sid] for sid in PUT_UP), shown.output
    assert all(" skipped " in lines[sid] for sid in TAKE_DOWN), shown.output
    assert all(f"warning: {sid}: " in shown.output for sid in PUT_UP), shown.output
    assert "SECRET-hook-token-123" not in shown.output + done.stdout.decode() + done.stderr.decode()


def test_a_primary_that_never_answers_costs_each_best_effort_step_its_deadline(
        tmp_path: Path, outage: Outage, server_client: ClientFor, server_world: World, web: Web) -> None:
    """The primary region takes every connection and never answers (the proxy holds each call for up to a minute):
    each try's socket times out within the step's time left, so the two best-effort steps cost about their 5 s
    deadlines, not botocore's 15 s read timeout per call. A real process on real time."""
    outage.fail(PRIMARY, mode="hang")
    params = failover_params(server_world, web, health_interval="200ms")
    args = [sys.executable, "-m", "scaler", "runbook", "run", "region-failover", "--runbooks", str(RUNBOOKS),
            "--journal", str(tmp_path / "journal.db"), "--endpoint-url", outage.url, "--region", PRIMARY,
            "--why", "INC-2: us-east-1 hangs", "--json", *[a for k, v in params.items() for a in ("-p", f"{k}={v}")]]
    t0 = time.monotonic()
    done = subprocess.run(args, env=os.environ | CREDENTIALS, capture_output=True, timeout=120, check=False)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert snapshot(server_client, server_world) == MOVED
    assert primary_services(outage, "hang") == {"elasticloadbalancing", "ssm"}
    steps = {s["id"]: s for s in run["steps"]}
    for sid in PUT_UP:
        step = steps[sid]
        assert step["status"] == "failed (best effort)"
        assert "ReadTimeoutError" in step["error"] or "ConnectTimeoutError" in step["error"], step["error"]
        # its 5 s deadline, overrun by at most a last call's 1 s floor; a 15 s read timeout per call took 15 s
        assert step["finished_at"] - step["started_at"] < 7.0, step
    assert took < 25, f"{took:.1f} s"  # the two steps, two 0.2 s health intervals, process start-up
