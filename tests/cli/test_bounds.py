"""`scaler policy validate` and `scaler simulate` on files that ask for absurd sizes: one clear message naming
the file and what is out of bounds, exit code 2, never a traceback and never the work itself.

`simulate` runs in a fresh interpreter limited to 2 GiB of address space (RLIMIT_AS), under typer's CliRunner:
these inputs used to allocate 3 to 13 GB or run for minutes, and must now stop long before that.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli.main import app
from tests.conftest import ROOT

WEB = ROOT / "policies" / "web.yaml"
TRACE = ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv"
T = 1_700_000_000


def web_with(old: str, new: str, path: Path) -> Path:
    """policies/web.yaml with one line changed, written to `path`."""
    text = WEB.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


# (id, line of web.yaml, its replacement, what the one message says)
POLICIES = [
    ("interval-1ms", "interval: 15s", "interval: 1ms", "interval: must be from 1s to 1h, got 1ms"),
    ("interval-1e20", "interval: 15s", "interval: 1e20", "interval: must be from 1s to 1h, got 1e+20 s"),
    ("interval-inf", "interval: 15s", "interval: .inf",
     "interval: a duration must be a finite number of seconds, got inf"),
    ("window-100000h", "length: 30s", "length: 100000h",
     "metrics[0].window.length: must be at most 1d, got 4166d16h"),
]


def one_message(output: str, mark: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output and len(lines) == 1 and lines[0].startswith(mark), output
    return lines[0]


@pytest.mark.parametrize("old, new, what", [p[1:] for p in POLICIES], ids=[p[0] for p in POLICIES])
def test_policy_validate_refuses_an_absurd_size_in_one_line(tmp_path, old, new, what):
    path = web_with(old, new, tmp_path / "web.yaml")
    result = CliRunner().invoke(app, ["policy", "validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert one_message(result.output, "✗") == f"✗ {path}: invalid config: {what}"


def _recordings(d: Path) -> dict[str, Path]:
    century = d / "century.csv"
    century.write_text(f"timestamp,cpu\n{T},50\n{T + 3_155_760_000},60\n")
    cell = d / "cell.csv"
    cell.write_text("timestamp,cpu\n" + "".join(f"{T + 60 * i},50\n" for i in range(400)) + f"{T},{'1' * 5_000_000}\n")
    deep = d / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    return {"century": century, "cell": cell, "deep": deep}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, list[str]]:
    """The arguments of every `scaler simulate` case, by id."""
    d = tmp_path_factory.mktemp("bounds")
    runs = {name: ["simulate", str(web_with(old, new, d / f"{name}.yaml")), str(TRACE), "--metric", "cpu"]
            for name, old, new, _ in POLICIES}
    return runs | {name: ["simulate", str(WEB), str(path), "--metric", "cpu"] for name, path in _recordings(d).items()}


def simulate_limited(args: list[str]) -> dict:
    """`scaler simulate ARGS` under CliRunner in a fresh interpreter with 2 GiB of address space and two minutes:
    {"exit": code, "output": text, "crash": repr of an exception other than the exit}."""
    code = f"""
        import json
        from typer.testing import CliRunner
        from scaler.cli.main import app
        r = CliRunner().invoke(app, {args!r})
        crash = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
        print(json.dumps({{"exit": r.exit_code, "output": r.output, "crash": crash}}))
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30,) * 2)

    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=limit, capture_output=True,
                              text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        pytest.fail("scaler simulate was still working after two minutes")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


SIMULATED = [(name, what) for name, _, _, what in POLICIES] + [
    ("century", "invalid data: resampled every 15 s, its 73,050.0 days (to one step past the last sample) are "
                "420,768,000 ticks x 1 target(s) = 420,768,000 cells, more than the limit of 50,000,000"),
    ("cell", "invalid data: row 402, column 'cpu': a cell of 5,000,000 characters, more than the limit of 256"),
    ("deep", "invalid data: nested 100,000 deep, more than the limit of 32"),
]


@pytest.mark.parametrize("name, what", SIMULATED, ids=[s[0] for s in SIMULATED])
def test_simulate_refuses_an_absurd_size_in_one_line_before_the_work(cases, name, what):
    outcome = simulate_limited(cases[name])
    assert outcome["crash"] is None, outcome
    assert outcome["exit"] == 2
    line = one_message(outcome["output"], "error:")
    assert line.startswith("error: ") and what in line


def test_a_deeply_nested_or_huge_policy_file_is_one_message(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (2 << 20) + "\n")
    for path, message in ((deep, "nested too deeply"), (huge, "larger than 1024 KiB")):
        result = CliRunner().invoke(app, ["policy", "validate", str(path)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--lag", "2h"], "--lag: Input should be less than or equal to 3600"),
    (["--startup-delay", "1d"], "--startup-delay: Input should be less than or equal to 3600"),
    (["--capacity", "1e-300", "--metric", "cpu"], "check --capacity"),
], ids=["lag", "startup-delay", "capacity"])
def test_model_options_that_would_size_rings_or_overflow_demand_are_refused(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", str(WEB), str(TRACE), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
