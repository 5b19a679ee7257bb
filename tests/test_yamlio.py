"""YAML loading: a key given twice in one mapping is an error naming the file, the line and the key, in every
file scaler reads (policies, runbooks, the run and serve configs), never a silent "the last one wins"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scaler.errors import ConfigError
from scaler.yamlio import read_yaml

POLICY = """\
name: web
replicas:
  min: 2
  max: 10
  min: 1
metrics:
  - {name: cpu, query: "avg by (service) (cpu)", target: 70}
"""


def test_a_key_given_twice_names_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    (problem,) = caught.value.problems
    assert caught.value.source == str(path)
    assert (problem.where, problem.what) == ("line 5, column 3", "duplicate key 'min' (first at line 3)")
    assert str(caught.value) == (f"{path}: invalid config: line 5, column 3: duplicate key 'min' (first at line 3)")


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("a: 1\na: 2\n", "a", 2),
        ("a: {b: 1, b: 1}\n", "b", 1),  # the same value twice is still a typo somewhere
        ("- {x: 1}\n- {y: 1, y: 2}\n", "y", 2),
        ("1: a\n1: b\n", "1", 2),
        ("yes: a\ntrue: b\n", "True", 2),  # two spellings of one key: YAML 1.1 reads `yes` as true
    ],
    ids=["top-level", "flow-mapping", "in-a-list", "number-key", "two-spellings"],
)
def test_duplicates_anywhere_are_refused(tmp_path: Path, text: str, key: str, line: int) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    (problem,) = caught.value.problems
    assert problem.where.startswith(f"line {line},") and f"duplicate key '{key}'" in problem.what


def test_a_merge_key_may_be_overridden_and_the_same_key_in_two_mappings_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {a: 1, b: 2}\nuse:\n  <<: *b\n  b: 3\nother: {a: 1}\n")
    assert read_yaml(path) == {"base": {"a": 1, "b": 2}, "use": {"a": 1, "b": 3}, "other": {"a": 1}}


def _policy(path: Path) -> object:
    from scaler.policy.load import load_policy

    return load_policy(path)


def _runbook(path: Path) -> object:
    from scaler.runbook.model import load

    return load(path)


def _run_config(path: Path) -> object:
    from scaler.live.config import load_run_config

    return load_run_config(path)


def _serve_config(path: Path) -> object:
    from scaler.server.serve import load_serve_config

    return load_serve_config(path)


FILES: list[tuple[str, Callable[[Path], object], str, str, int]] = [
    ("policy", _policy, POLICY, "min", 5),
    ("runbook", _runbook,
     "name: x\nsteps:\n  - id: a\n    action: wait\n    inputs: {seconds: 1}\n    action: wait\n", "action", 6),
    ("run-config", _run_config,
     "prometheus: {url: 'http://127.0.0.1:9090'}\npolicies: []\nprometheus: {url: 'http://other:9090'}\n",
     "prometheus", 3),
    ("serve-config", _serve_config,
     "webhook: {token_env: T}\nrunbooks_dir: .\njournal: j.db\njournal: other.db\n", "journal", 4),
]


@pytest.mark.parametrize(("load", "text", "key", "line"), [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_every_file_scaler_reads_refuses_duplicates(tmp_path: Path, load: Callable[[Path], object], text: str,
                                                    key: str, line: int) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert f"line {line}, column" in str(caught.value) and f"duplicate key '{key}'" in str(caught.value)
