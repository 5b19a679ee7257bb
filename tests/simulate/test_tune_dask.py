"""The distributed path: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1 run the candidate
chunks, and `scaler tune` makes the same choice from the same figures as with local processes."""

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from scaler.cli.main import app
from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate.grid import grid, parse_grid
from scaler.simulate.sweep import DaskCluster, LocalPool
from scaler.simulate.tune import tune
from scaler.simulate.world import World
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

pytest.importorskip("distributed")

WEB = ROOT / "policies" / "web.yaml"
TRACE = ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv"
GRID = ["target=0.92,1,1.08", "up=0.94,1", "down=1", "down_stabilization=0s,1m,5m", "down_cooldown=0s,2m"]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """tcp://127.0.0.1:PORT of a scheduler (on a port it picked) with two one-thread workers registered."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    info = tmp / "scheduler.json"
    logs = [open(tmp / name, "w") for name in ("scheduler.log", "worker-1.log", "worker-2.log")]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)], stdout=logs[0], stderr=logs[0])]
    try:
        deadline = time.monotonic() + 60
        while not (info.exists() and info.stat().st_size) and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        for log in logs[1:]:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--local-directory", str(tmp), "--death-timeout", "60"],
                stdout=log, stderr=log))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def recording(days: float = 4):
    rec = load_recording(TRACE, metric="cpu")
    keep = rec.times < rec.times[0] + days * 86400
    return replace(rec, times=rec.times[keep], metrics={k: v[:, keep] for k, v in rec.metrics.items()})


def test_the_cluster_makes_the_same_choice_from_the_same_figures(scheduler):
    web = load_policy(WEB)
    g = grid(web, parse_grid(GRID))
    rec, world = recording(), World(recorded_replicas=13.1)
    local = tune(web, rec, world, g, LocalPool(2))
    with DaskCluster(scheduler) as cluster:
        assert cluster.workers == 2
        remote = tune(web, rec, world, g, cluster)
    for a, b in ((local.choose, remote.choose), (local.check, remote.check)):
        assert a.points == b.points and a.curve == b.curve and a.hpa == b.hpa  # to the bit
    assert (remote.chosen, remote.holds) == (local.chosen, local.holds)
    assert remote.result == local.result


def test_scaler_tune_with_a_scheduler_prints_what_it_prints_locally(scheduler, tmp_path):
    short = tmp_path / "four-days.csv"
    rec = recording()
    short.write_text("timestamp,value\n" + "".join(f"{int(t)},{v}\n" for t, v in zip(rec.times, rec.metrics["cpu"][0],
                                                                                     strict=True)))
    args = ["tune", str(WEB), str(short), "--metric", "cpu", "--recorded-replicas", "13.1",
            *[x for spec in GRID for x in ("--grid", spec)]]
    outputs = {}
    for where in (["--workers", "2"], ["--scheduler", scheduler]):
        out = tmp_path / where[0].strip("-")
        result = CliRunner().invoke(app, [*args, *where, "--out", str(out)])
        assert result.exit_code == 0, result.output
        outputs[where[0]] = " ".join(result.output.split()).replace(str(out), "OUT")
    assert "wrote OUT/tuned.yaml, OUT/candidates.csv, OUT/tune.png" in outputs["--scheduler"]
    assert outputs["--workers"] == outputs["--scheduler"]
    local, remote = ((tmp_path / d / "candidates.csv").read_text() for d in ("workers", "scheduler"))
    assert local == remote


def test_a_scheduler_that_is_not_there_is_one_message():
    result = CliRunner().invoke(app, ["tune", str(WEB), str(TRACE), "--metric", "cpu", "--scheduler",
                                      "tcp://127.0.0.1:1", "--grid", "target=1"])
    assert result.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in result.output
    assert "Traceback" not in result.output
