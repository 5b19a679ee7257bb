"""Error messages reach the terminal as they are: text in brackets is never taken for terminal markup."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from scaler.cli.main import app

runner = CliRunner()


def test_policy_validate_prints_a_bracketed_file_name_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "[bold]web.yaml"
    path.write_text("name: web\nreplicas: {min: 5, max: 2}\n")
    result = runner.invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"✗ {path}: invalid config")


def test_simulate_prints_a_bracketed_file_name_as_it_is(tmp_path: Path) -> None:
    missing = tmp_path / "[red]policy.yaml"
    result = runner.invoke(app, ["simulate", str(missing), str(tmp_path / "trace.csv")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {missing}: invalid config: file not found"


def test_a_message_with_markup_in_it_is_shown_whole(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "only-one-path[/bold]")])
    assert result.exit_code == 2
    assert result.output.strip() == "error: simulate needs at least one POLICY and then METRICS"
    recording = tmp_path / "trace.csv"
    recording.write_text("timestamp,cpu\n1700000000,[bold]50[/bold]\n")
    policy = Path(__file__).resolve().parents[2] / "policies" / "web.yaml"
    result = runner.invoke(app, ["simulate", str(policy), str(recording), "--metric", "cpu"])
    assert result.exit_code == 2
    assert "[bold]50[/bold]" in result.output
