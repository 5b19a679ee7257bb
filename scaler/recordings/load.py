"""Recorded metrics for `scaler simulate`: CSV, Parquet, Arrow, Prometheus JSON, a directory or a live range."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from scaler.errors import DataError
from scaler.recordings.columnar import is_columnar, load_table
from scaler.recordings.csvfile import Progress
from scaler.recordings.csvload import load_csv
from scaler.recordings.model import Recording, resample, select
from scaler.recordings.promjson import load_directory, load_prometheus_json
from scaler.recordings.promrange import load_prometheus_range

__all__ = [
    "Recording",
    "load_csv",
    "load_prometheus_json",
    "load_prometheus_range",
    "load_recording",
    "load_table",
    "resample",
]


def load_recording(
    path: str | PathLike[str],
    *,
    metric: str | None = None,
    target: str | None = None,
    target_label: str | None = None,
    progress: Progress | None = None,
) -> Recording:
    """Load recorded metrics from a directory, a .json, .csv, .parquet or .arrow file (another suffix: sniffed by
    content).

    `metric` names the value of a `timestamp,value` CSV or of a JSON file (in a directory: keeps only that
    metric); `target` keeps only that target (or names the one target of a CSV without a `target` column);
    `target_label` is the Prometheus label that names targets in JSON. See load_csv, load_table and
    load_prometheus_json for the formats; `progress(done, total)` hears how far a file's reading has got.
    """
    p = Path(path)
    if p.is_dir():
        return load_directory(p, metric=metric, target=target, target_label=target_label)
    if not p.exists():
        raise DataError(str(p), "no such file or directory")
    if is_columnar(p):
        return load_table(p, metric=metric, target=target, progress=progress)
    if _is_json(p):
        rec = load_prometheus_json(p, metric=metric, target_label=target_label)
        return rec if target is None else select(rec, target=target)
    return load_csv(p, metric=metric, target=target, progress=progress)


def _is_json(path: Path) -> bool:
    """By suffix; a file with another suffix is JSON if it starts with '{' or '['."""
    suffix = path.suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix == ".json"
    try:
        with path.open("rb") as f:
            head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head[:1] in (b"{", b"[")
