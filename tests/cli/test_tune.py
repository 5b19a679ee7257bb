"""`scaler tune`: prints the grid, the table and what it chose; writes the tuned policy, every candidate and a plot;
says plainly when nothing beats HPA; every mistake is one message and exit code 2."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from scaler.cli.main import app
from scaler.recordings.load import load_recording
from tests.conftest import ROOT

WEB = ROOT / "policies" / "web.yaml"
TRACE = ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv"
SMALL = ["--grid", "target=0.92,1,1.08", "--grid", "up=1", "--grid", "down=1", "--grid", "down_stabilization=0s,1m",
         "--grid", "down_cooldown=0s"]


@pytest.fixture(scope="module")
def four_days(tmp_path_factory):
    """The bundled trace's first four days as a timestamp,cpu CSV."""
    rec = load_recording(TRACE, metric="cpu")
    keep = rec.times < rec.times[0] + 4 * 86400
    rec = replace(rec, times=rec.times[keep], metrics={"cpu": rec.metrics["cpu"][:, keep]})
    path = tmp_path_factory.mktemp("trace") / "four-days.csv"
    path.write_text("timestamp,cpu\n" + "".join(f"{int(t)},{v}\n" for t, v in zip(rec.times, rec.metrics["cpu"][0],
                                                                                  strict=True)))
    return path


def tune(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["tune", *args])
    return result.exit_code, " ".join(result.output.split())


def test_it_prints_the_grid_the_table_and_the_choice_and_writes_a_valid_policy(four_days, tmp_path):
    code, out = tune(str(WEB), str(four_days), "--recorded-replicas", "13.1", *SMALL, "--out", str(tmp_path))
    assert code == 0, out
    assert ("grid: target x0.92, x1, x1.08; up x1; down x1; down_stabilization 0s, 1m; up_stabilization 0s; "
            "down_cooldown 0s; up_cooldown 0s: 6 candidates (the policy as written first)") in out
    assert "SLO: p95 latency <= 0.3 s, error rate <= 1 %, utilization <= 90 % (from web)" in out
    assert "the policy as written" in out and "HPA-equivalent (hpa-baseline)" in out
    assert "HPA's curve, choose part: 30 %:" in out and "HPA's curve, check part: 30 %:" in out
    assert ("so it is the result." in out) or ("the result is the HPA-equivalent." in out)
    assert f"wrote {tmp_path}/tuned.yaml, {tmp_path}/candidates.csv, {tmp_path}/tune.png" in out
    result = CliRunner().invoke(app, ["policy", "validate", str(tmp_path / "tuned.yaml")])
    assert result.exit_code == 0 and "✓" in result.output


def test_when_nothing_beats_hpa_it_says_so_and_writes_the_hpa_equivalent(four_days, tmp_path):
    # web scaling up only past 99 % CPU, toward 95 %: far above HPA's curve, whatever the grid keeps
    late = tmp_path / "late.yaml"
    late.write_text(WEB.read_text().replace("scale_up_above: 78", "scale_up_above: 99")
                    .replace("target: 70                      # percent", "target: 95"))
    code, out = tune(str(late), str(four_days), "--recorded-replicas", "13.1", "--grid", "target=1", "--grid", "up=1",
                     "--grid", "down=1", "--grid", "down_stabilization=1m", "--grid", "down_cooldown=0s",
                     "--out", str(tmp_path / "out"))
    assert code == 0, out
    assert "No candidate beat HPA's curve on the choosing part: the result is the HPA-equivalent." in out
    text = (tmp_path / "out" / "tuned.yaml").read_text()
    assert text.startswith("# the HPA-equivalent of web") and "algorithm: hpa" in text


@pytest.mark.parametrize("args, said", [
    (["--grid", "speed=1"], "--grid: 'speed=1': expected AXIS=V1,V2,... with AXIS one of target"),
    (["--split", "1.5"], "--split: the split must lie between 0 and 1"),
    (["--split", "0.0001"], "the choose part spans 300 s of ticks, less than an hour: move --split"),
    (["--lag", "2h"], "invalid model option: --lag"),
    (["--slo", "p99=1s"], "invalid model option: 'p99=1s'"),
], ids=["grid", "split", "part-too-short", "world", "slo"])
def test_a_mistake_is_one_message(four_days, args, said):
    code, out = tune(str(WEB), str(four_days), "--recorded-replicas", "13.1", "--grid", "target=1", *args)
    assert code == 2 and said in out and "Traceback" not in out, out


def test_a_policy_it_cannot_tune_is_one_message(four_days):
    code, out = tune(str(ROOT / "policies" / "worker.yaml"), str(four_days))
    assert code == 2 and "has no utilization metric" in out
    code, out = tune(str(WEB), str(ROOT / "no-such-recording.csv"))
    assert code == 2 and "no such file" in out
