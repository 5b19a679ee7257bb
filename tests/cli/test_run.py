"""`scaler run --once`: the exit code says whether the tick fully worked, saving the state included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from scaler.store.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.sources.fakes import recording_server, vector

POLICY = {
    "name": "web",
    "replicas": {"min": 1, "max": 20},
    "metrics": [{"name": "cpu", "query": "avg by (service) (cpu)", "target": 70, "window": {"type": "last"}}],
}


def write_config(tmp_path: Path, prometheus: str) -> Path:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    config = {
        "prometheus": {"url": prometheus},
        "state": {"kind": "sqlite", "path": "state.db"},
        "policies": [{"policy": "policy.yaml", "target_label": "service",
                      "targets": [{"label": "a", "kind": "dry-run", "name": "a", "replicas": 2}]}],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def corrupt_the_table(path: Path) -> None:
    """Overwrite the pages after the schema: the file opens and its schema reads, but no row can be saved."""
    SqliteStore(path).save("state/web", b"saved before")
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)
    path.write_bytes(data)


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scaler", "run", str(config), "--once", "--log-format", "text"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_once_exits_non_zero_and_says_so_when_the_state_cannot_be_saved(tmp_path: Path) -> None:
    with recording_server(200, vector(({"service": "a"}, "50"))) as (url, _):
        config = write_config(tmp_path, url)
        healthy = run_once(config)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        corrupt_the_table(tmp_path / "state.db")
        broken = run_once(config)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "state not saved: sqlite" in broken.stdout and "SQLITE_CORRUPT" in broken.stdout
    assert "Traceback" not in broken.stderr
