"""Trigger rules checked against the runbooks they start, before any alert arrives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from scaler.alerts.rules import Rule
from scaler.errors import ConfigError, Problem
from scaler.runbook.errors import RunbookNotFound

if TYPE_CHECKING:  # only for the annotation: the service module loads every action and its clients
    from scaler.runbook.service import RunbookService


def check_rules_fit(rules: list[Rule], service: RunbookService, source: str | Path, *, prefix: str = "") -> None:
    """Every rule's runbook exists and takes the parameters the rule gives it.

    A rule naming a missing runbook, or a misspelt parameter, would otherwise fail only mid-incident.
    """
    problems: list[Problem] = []
    for i, rule in enumerate(rules):
        here = f"{prefix}triggers[{i}]"
        for where, action in ((here, rule), (f"{here}.on_resolved", rule.on_resolved)):
            if action is None:
                continue
            try:
                _, runbook = service.runbook(action.runbook)
            except RunbookNotFound:
                problems.append(Problem(f"{where}.runbook", f"no runbook {action.runbook!r} in "
                                        f"{service.runbooks_dir}"))
                continue
            except ConfigError as e:
                problems.append(Problem(f"{where}.runbook", f"runbook {action.runbook!r} is invalid: "
                                        + "; ".join(str(p) for p in e.problems)))
                continue
            for name in sorted(set(action.params) - set(runbook.parameters)):
                problems.append(Problem(f"{where}.params.{name}", f"runbook {action.runbook!r} has no "
                                        f"parameter {name!r}"))
            for name, param in runbook.parameters.items():
                if param.is_required and name not in action.params:
                    problems.append(Problem(f"{where}.params", f"runbook {action.runbook!r} needs "
                                            f"parameter {name!r}"))
    if problems:
        raise ConfigError(source, problems)
