"""`scaler simulate` end to end on the real traces: outputs agree with each other, bad input writes nothing."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scaler.cli.main import app
from tests.conftest import ROOT, SHARED_TRACES

runner = CliRunner()
WEB = ROOT / "policies" / "web.yaml"

# (trace, extra options): CPU traces are utilization of 4 recorded replicas; counts need a capacity.
TRACES = [
    ("ec2_cpu_utilization_5f5533.csv", ["--metric", "cpu"]),
    ("ec2_cpu_utilization_825cc2.csv", ["--metric", "cpu"]),
    ("rds_cpu_utilization_cc0c53.csv", ["--metric", "cpu"]),
    ("grok_asg_anomaly.csv", ["--metric", "cpu"]),
    ("cpu_utilization_asg_misconfiguration.csv", ["--metric", "cpu"]),
    ("elb_request_count_8c0756.csv", ["--metric", "requests", "--capacity", "40"]),
    ("nyc_taxi.csv", ["--metric", "passengers", "--capacity", "1500"]),
]


def head(src: Path, dst: Path, rows: int) -> Path:
    """The first `rows` samples of a trace (two days of 5-minute samples is 576)."""
    lines = src.read_text().splitlines()
    dst.write_text("\n".join(lines[: rows + 1]) + "\n")
    return dst


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("trace, opts", TRACES, ids=[t for t, _ in TRACES])
def test_simulate_each_trace_writes_consistent_outputs(tmp_path, trace, opts):
    data = head(SHARED_TRACES / trace, tmp_path / trace, rows=300)
    out = tmp_path / "out"
    res = invoke("simulate", WEB, data, "--compare", "hpa", "--out", out, *opts)
    assert res.exit_code == 0, res.output
    assert "web" in res.output and "hpa-baseline" in res.output

    summary = json.loads((out / "summary.json").read_text())
    assert [p["policy"] for p in summary["policies"]] == ["web", "hpa-baseline"]
    with (out / "timeline.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for pol in summary["policies"]:
        mine = [r for r in rows if r["policy"] == pol["policy"]]
        assert len(mine) == pol["ticks"] > 0
        figures = pol["targets"]["default"]
        desired = np.array([float(r["desired"]) for r in mine])
        replicas = np.array([float(r["replicas"]) for r in mine])
        # The summary is the timeline added up: replica-hours, actions, peak, SLO breaches.
        assert figures["replica_hours"] == pytest.approx(desired.sum() * 15 / 3600, abs=1e-3)
        assert figures["scale_ups"] == int((desired > replicas).sum())
        assert figures["scale_downs"] == int((desired < replicas).sum())
        assert figures["peak_replicas"] == desired.max()
        assert figures["slo_violation_seconds"] == 15 * sum(r["slo_ok"] == "0" for r in mine)
        # Every tick names its reason; every action is inside the policy's bounds.
        assert all(r["reason"] for r in mine)
        lo, hi = (3, 10)
        assert desired.min() >= lo and desired.max() <= hi
        # Replicas requested at one tick are the ones in effect at the next (closed loop).
        assert np.array_equal(replicas[1:], desired[:-1])
    assert summary["policies"][0]["model"]["startup_delay"] == 60


def test_bundled_default_needs_no_arguments(tmp_path):
    out = tmp_path / "out"
    res = invoke("simulate", "--out", out)
    assert res.exit_code == 0, res.output
    assert "bundled" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policies"][0]["ticks"] == 14 * 24 * 240  # 14 days at 15 s
    assert summary["policies"][0]["notes"], "coarse samples held: the report says so"


def test_startup_delay_and_lag_change_the_outcome(tmp_path):
    data = head(SHARED_TRACES / "cpu_utilization_asg_misconfiguration.csv", tmp_path / "t.csv", rows=600)
    results = []
    for delay in ("0s", "5m"):
        out = tmp_path / delay
        assert invoke("simulate", WEB, data, "--metric", "cpu", "--startup-delay", delay, "--out", out).exit_code == 0
        results.append(json.loads((out / "summary.json").read_text())["policies"][0]["targets"]["default"])
    # Replicas that take 5 minutes to start leave demand unserved for longer.
    assert results[1]["slo_violation_seconds"] > results[0]["slo_violation_seconds"]


HPA_MANIFEST = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 12
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
"""


def test_hpa_manifest_is_a_policy(tmp_path):
    manifest = tmp_path / "hpa.yaml"
    manifest.write_text(HPA_MANIFEST)
    data = head(SHARED_TRACES / "ec2_cpu_utilization_825cc2.csv", tmp_path / "t.csv", rows=200)
    out = tmp_path / "out"
    res = invoke("simulate", manifest, data, "--metric", "cpu", "--out", out)
    assert res.exit_code == 0, res.output
    pol = json.loads((out / "summary.json").read_text())["policies"][0]
    assert pol["algorithm"] == "hpa"
    # 92 % CPU on 4 replicas against a 60 % target: HPA scales up (ceil(4 * 92 / 60) = 7 at least).
    assert pol["targets"]["default"]["peak_replicas"] >= 7


def test_gauge_metric_missing_from_recording_is_a_clear_error(tmp_path):
    data = head(SHARED_TRACES / "ec2_cpu_utilization_825cc2.csv", tmp_path / "t.csv", rows=20)
    res = runner.invoke(app, ["simulate", str(ROOT / "policies" / "worker.yaml"), str(data), "--metric", "cpu"])
    assert res.exit_code == 2
    assert "queue_length" in res.output and "not in the recording" in res.output


def test_explain_prints_reasons_for_actions(tmp_path):
    data = head(SHARED_TRACES / "cpu_utilization_asg_misconfiguration.csv", tmp_path / "t.csv", rows=400)
    res = invoke("simulate", WEB, data, "--metric", "cpu", "--explain")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if " -> " in ln and "[" in ln]
    assert lines, res.output
    assert any("METRIC_UP" in ln or "PANIC" in ln for ln in lines)
    assert any("cpu" in ln and "ceil(" in ln for ln in lines)


BAD_CSV = {
    "non-numeric": ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n", "row 3"),
    "bad-timestamp": ("timestamp,value\nyesterday,1\n", "timestamp"),
    "duplicate": ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:00:00,2\n", "duplicate"),
    "no-header": ("", "empty"),
}


@pytest.mark.parametrize("name", BAD_CSV)
def test_bad_csv_is_one_clear_error_and_writes_nothing(tmp_path, name):
    text, expect = BAD_CSV[name]
    data = tmp_path / "bad.csv"
    data.write_text(text)
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", str(WEB), str(data), "--metric", "cpu", "--out", str(out)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "bad.csv" in res.output and expect.lower() in res.output.lower()
    assert not out.exists()


def test_bad_policy_names_file_and_every_field_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nreplicas: {min: 5, max: 2}\nmetrics:\n  - name: cpu\n    target: -1\n"
                   "behavior:\n  scale_up: {stabilization: 10s, policies: [{type: pods, value: 0, period: 15s}]}\n")
    out = tmp_path / "out"
    data = head(SHARED_TRACES / "ec2_cpu_utilization_5f5533.csv", tmp_path / "t.csv", rows=50)
    res = runner.invoke(app, ["simulate", str(bad), str(data), "--metric", "cpu", "--out", str(out)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    for where in ("bad.yaml", "replicas", "metrics[0].target", "behavior.scale_up.policies[0].value"):
        assert where in res.output, where
    assert not out.exists()


def test_policy_validate_shipped_policies_and_reports_all_problems(tmp_path):
    shipped = sorted((ROOT / "policies").glob("*.yaml"))
    assert len(shipped) >= 3
    res = invoke("policy", "validate", *shipped)
    assert res.exit_code == 0, res.output
    assert res.output.count("✓") == len(shipped)

    bad = tmp_path / "typo.yaml"
    bad.write_text("name: x\nreplicas: {max: 3}\nintervall: 15s\nmetrics: []\n")
    res = runner.invoke(app, ["policy", "validate", str(bad), str(shipped[0])])
    assert res.exit_code == 2
    assert "typo.yaml" in res.output and "intervall" in res.output and "metrics" in res.output
    assert "✓" in res.output  # the good file is still checked


def test_policy_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nreplicas: {max: 3\n")
    res = runner.invoke(app, ["policy", "validate", str(bad)])
    assert res.exit_code == 2 and "broken.yaml" in res.output and "line" in res.output


def test_policy_schema_is_json_schema():
    res = invoke("policy", "schema")
    schema = json.loads(res.output)
    assert "metrics" in schema["properties"] and "replicas" in schema["required"]


def test_bundled_policy_is_the_shipped_web_policy():
    from scaler import defaults

    assert defaults.DEFAULT_POLICY.read_text() == WEB.read_text()


def fleet_csv(path: Path, targets: int = 6, rows: int = 2000) -> Path:
    """A small fleet in long format: every target a stretch of one real trace, scaled."""
    lines = (SHARED_TRACES / "ec2_cpu_utilization_825cc2.csv").read_text().splitlines()[1 : rows + 1]
    out = ["timestamp,target,cpu"]
    for j in range(targets):
        for line in lines:
            stamp, value = line.split(",")
            out.append(f"{stamp},svc-{j},{min(100.0, float(value) * (0.6 + 0.15 * j)):.3f}")
    path.write_text("\n".join(out) + "\n")
    return path


def test_a_parquet_timeline_holds_what_the_csv_does_and_a_parquet_recording_replays_alike(tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    data = fleet_csv(tmp_path / "fleet.csv")
    runs = {}
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        res = invoke("simulate", WEB, data, "--compare", "hpa", "--out", out, "--format", fmt)
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in out.iterdir()) == ["report.png", "summary.json", f"timeline.{fmt}"]
        runs[fmt] = json.loads((out / "summary.json").read_text())
    assert runs["csv"] == runs["parquet"]
    table = pq.read_table(tmp_path / "parquet" / "timeline.parquet")
    with (tmp_path / "csv" / "timeline.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert table.num_rows == len(rows) and table.column("reason").to_pylist() == [r["reason"] for r in rows]

    recording = tmp_path / "fleet.parquet"
    pq.write_table(pcsv.read_csv(data), recording)
    out = tmp_path / "from-parquet"
    assert invoke("simulate", WEB, recording, "--compare", "hpa", "--out", out).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    summary["recording"] = runs["csv"]["recording"]
    assert summary == runs["csv"]


def test_a_fleet_gets_a_fleet_report(tmp_path):
    out = tmp_path / "out"
    res = invoke("simulate", WEB, fleet_csv(tmp_path / "fleet.csv"), "--compare", "hpa", "--out", out)
    assert res.exit_code == 0, res.output
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(png[20:24], "big")
    single = tmp_path / "single"
    assert invoke("simulate", WEB, fleet_csv(tmp_path / "one.csv", targets=1), "--out", single).exit_code == 0
    # distributions and the worst targets above each policy's worst target: a taller picture
    assert height > int.from_bytes((single / "report.png").read_bytes()[20:24], "big")


def test_an_unknown_timeline_format_is_one_clear_error(tmp_path):
    data = head(SHARED_TRACES / "ec2_cpu_utilization_825cc2.csv", tmp_path / "t.csv", rows=50)
    res = runner.invoke(app, ["simulate", str(WEB), str(data), "--metric", "cpu", "--format", "xml",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--format 'xml'" in res.output
    assert not (tmp_path / "out").exists()
