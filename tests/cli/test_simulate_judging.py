"""`scaler simulate` judges every policy by one SLO and can read them against HPA's curve at equal cost."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from scaler.cli.main import app
from tests.conftest import ROOT

WEB = str(ROOT / "policies" / "web.yaml")
HPA = str(ROOT / "policies" / "hpa-default.yaml")
TRACE = str(ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv")


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_the_slo_is_the_first_policys_unless_given_and_is_printed():
    # hpa-default.yaml has no slo: compared with web, it is judged by web's
    out = run(WEB, HPA, TRACE, "--metric", "cpu")
    assert "SLO for every policy: p95 latency <= 0.3 s, error rate <= 1 %, utilization <= 90 % (from web)" in out
    out = run(HPA, WEB, TRACE, "--metric", "cpu", "--slo", "latency=2s")
    assert "SLO for every policy: p95 latency <= 2 s" in out and "(from" not in out


def test_the_hpa_comparisons_and_the_equal_cost_table():
    out = run(WEB, TRACE, "--metric", "cpu", "--compare", "hpa", "--compare", "hpa-v2", "--sweep-hpa")
    assert "hpa-baseline" in out and "hpa-v2-baseline" in out
    assert "at HPA's equal cost" in out and "HPA's curve: 30 %:" in out and "95 %:" in out
    # the plain HPA, at the policy's own CPU target, is a point of its own curve: 1.00
    assert re.search(r"hpa-baseline │ [\d.]+ │ [\d.]+ h │ [\d.]+ h │ 1\.00 │", out), out


def test_a_bad_slo_or_timing_is_one_message():
    for args, said in ((["--slo", "p99=1s"], "'p99=1s'"), (["--sample-timing", "smooth"], "--sample-timing")):
        result = CliRunner().invoke(app, ["simulate", WEB, TRACE, "--metric", "cpu", *args])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output
