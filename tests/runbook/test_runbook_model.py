"""Runbook files: the shipped ones load; broken ones fail naming the file, the field, and every problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scaler.cli.runbook import app
from scaler.errors import ConfigError
from scaler.runbook.model import load, load_dir
from tests.runbook.helpers import RUNBOOKS

BASE: dict[str, Any] = {
    "name": "demo",
    "parameters": {"flag": {"default": "/demo/flag"}, "listener": {}},
    "steps": [
        {"id": "rule", "action": "elb.maintenance_rule", "inputs": {"listener_arn": "{{ params.listener }}",
                                                                   "enabled": True}},
        {"id": "flag", "action": "ssm.set_parameter", "inputs": {"name": "{{ params.flag }}", "value": "on"},
         "compensate": {"action": "ssm.set_parameter",
                        "inputs": {"name": "{{ params.flag }}", "value": "{{ steps.flag.previous }}"}}},
    ],
}


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def changed(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def test_shipped_runbooks_load() -> None:
    assert sorted(load_dir(RUNBOOKS)) == ["database-restore", "deployment-rollback", "maintenance-mode",
                                          "region-failback", "region-failover", "rotate-secret", "security-lockdown"]


def test_base_fixture_is_valid(tmp_path: Path) -> None:
    assert load(write(tmp_path, BASE)).steps[1].compensate is not None


BROKEN = [
    ("unknown action", lambda d: d["steps"][0].update(action="elb.nope"), "steps[0].action", "unknown action"),
    ("missing input", lambda d: d["steps"][0]["inputs"].pop("listener_arn"), "steps[0].inputs.listener_arn",
     "needs input"),
    ("unknown input", lambda d: d["steps"][1]["inputs"].update(bogus=1), "steps[1].inputs.bogus", "has no input"),
    ("bad duration", lambda d: d["steps"][0].update(timeout="5 minutes"), "steps[0].timeout", "duration"),
    ("negative literal", lambda d: d["steps"].append(
        {"id": "scale", "action": "asg.set_desired", "inputs": {"group": "g", "desired": -1}}),
     "steps[2].inputs.desired", "greater than or equal"),
    ("unknown parameter", lambda d: d["steps"][1]["inputs"].update(name="{{ params.nope }}"),
     "steps[1].inputs.name", "no parameter 'nope'"),
    ("later step", lambda d: d["steps"][0]["inputs"].update(listener_arn="{{ steps.flag.previous }}"),
     "steps[0].inputs.listener_arn", "not an earlier step"),
    ("expression", lambda d: d["steps"][1]["inputs"].update(value="{{ params.flag + 1 }}"),
     "steps[1].inputs.value", "not a reference"),
    ("unknown root", lambda d: d["steps"][1]["inputs"].update(value="{{ env.HOME }}"),
     "steps[1].inputs.value", "must start with one of"),
    ("duplicate id", lambda d: d["steps"][1].update(id="rule"), "steps[1].id", "duplicate step id"),
    ("bad on_failure", lambda d: d["steps"][0].update(on_failure="ignore"), "steps[0].on_failure",
     "'abort', 'continue' or 'rollback'"),
    ("secret not string", lambda d: d["parameters"].update(n={"type": "int", "secret": True}), "parameters.n",
     "must be of type string"),
    ("secret default in file", lambda d: d["parameters"].update(hook={"secret": True, "default": "https://x"}),
     "parameters.hook", "reference"),
    ("verify that writes", lambda d: d["steps"][1].update(verify={
        "action": "ssm.set_parameter", "inputs": {"name": "x", "value": "y"}, "expect": {"changed": False}}),
     "steps[1].verify.action", "only read-only"),
    ("wait past timeout", lambda d: d["steps"].append(
        {"id": "pause", "action": "wait", "inputs": {"seconds": "10m"}, "timeout": "1m"}),
     "steps[2].inputs.seconds", "step timeout"),
    ("typo at top", lambda d: d.update(stepz=[]), "stepz", "Extra inputs are not permitted"),
    ("no steps", lambda d: d.update(steps=[]), "steps", "at least 1 item"),
    ("scope reads steps", lambda d: d.update(concurrency="{{ steps.flag.previous }}"), "concurrency",
     "not known here"),
    ("bad run field", lambda d: d["steps"][1]["inputs"].update(value="{{ run.trigger.when }}"),
     "steps[1].inputs.value", "run has id"),
]


@pytest.mark.parametrize(("edit", "where", "what"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_runbook_names_file_and_field(tmp_path: Path, edit: Callable, where: str, what: str) -> None:
    path = write(tmp_path, changed(edit))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.source == str(path)
    found = {p.where: p.what for p in caught.value.problems}
    assert where in found, found
    assert what in found[where]


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["steps"][0]["timeout"] = "soon"  # pydantic finds this
        d["steps"][1]["action"] = "ssm.nope"  # the registry check finds this
        d["steps"][0]["inputs"]["listener_arn"] = "{{ params.missing }}"  # the template check finds this

    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, changed(edit)))
    assert {p.where for p in caught.value.problems} >= {"steps[0].timeout", "steps[1].action",
                                                        "steps[0].inputs.listener_arn"}
    assert "3 problems" in str(caught.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "name: demo\nsteps: [\n  - id: x\n"))
    assert "line" in caught.value.problems[0].where


def test_directory_with_two_bad_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, changed(lambda d: d["steps"][0].update(action="x.y")), "a.yaml")
    write(tmp_path, changed(lambda d: d.update(name="other", stepz=1)), "b.yaml")
    with pytest.raises(ConfigError) as caught:
        load_dir(tmp_path)
    wheres = [p.where for p in caught.value.problems]
    assert "a.yaml: steps[0].action" in wheres and "b.yaml: stepz" in wheres


def test_duplicate_names_in_directory(tmp_path: Path) -> None:
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, BASE, "b.yaml")
    with pytest.raises(ConfigError) as caught:
        load_dir(tmp_path)
    assert caught.value.source.endswith("b.yaml") and "also defined in a.yaml" in str(caught.value)


def test_cli_validate_reports_file_and_field_with_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path, changed(lambda d: d["steps"][1].update(action="ssm.nope")))
    result = CliRunner().invoke(app, ["validate", str(RUNBOOKS / "region-failover.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "region-failover" in result.output and "11 steps" in result.output
    assert str(bad) in result.output and "steps[1].action" in result.output
    assert "Traceback" not in result.output
