"""Recorded metrics from CSV: the columnar reader for the files it reads exactly, the row-by-row one for the rest."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from scaler.recordings.columnar import read_csv_columnar
from scaler.recordings.csvfile import Progress, read_rows
from scaler.recordings.model import Recording, require_metrics, select


def load_csv(
    path: str | PathLike[str],
    *,
    metric: str | None = None,
    target: str | None = None,
    progress: Progress | None = None,
) -> Recording:
    """Read a recorded-metrics CSV.

    Columns: `timestamp` (required; unix seconds, RFC 3339 with a zone, or `YYYY-MM-DD HH:MM:SS` read as
    UTC), `target` (optional: one row per target and time), `replicas` (optional), and every other column is
    a metric. A `value` column is the metric named by `metric` (so a `timestamp,value` file needs it); in a
    file without a `value` column, `metric` keeps only that metric. `target` names the one target of a file
    without a `target` column (default "default"), or keeps only that target's rows.

    Rows may come in any order: they are sorted by time. Empty cells and NaN are "no data"; +Inf (Prometheus
    spells x/0 so) is no data too. Every problem (missing header, unreadable timestamps, millisecond epochs,
    non-numeric or negative cells, duplicate rows) is reported at once in one DataError, by file row (the
    header is row 1) and column.

    Sizes are bounded before the memory they need is taken (scaler.recordings.model): a file over 1 GiB is
    refused unread, a cell over 256 characters before any cell is parsed, a value above 1e15 like a negative
    one, and more than 32 metric columns, 10,000 targets or 50 M (target, time) cells before the arrays.
    `progress(done, total)` is told how far the reading has got, in bytes.
    """
    rec, had_value = read_csv(Path(path), value_name=metric, target=target, progress=progress)
    if metric is not None and not had_value:
        rec = select(rec, metric=metric)
    return require_metrics(rec)


def read_csv(
    path: Path, *, value_name: str | None, target: str | None, progress: Progress | None = None
) -> tuple[Recording, bool]:
    """The Recording in `path`, and whether it had a `value` column (then named `value_name`).

    The columnar reader (scaler.recordings.columnar) takes every file it can read exactly as the row-by-row
    reader would (scaler.recordings.csvfile.read_rows); any other file, and every file with a problem to
    report, is read row by row, which names each problem by row and column.
    """
    fast = read_csv_columnar(path, value_name=value_name, target=target, progress=progress)
    if fast is not None:
        return fast
    return read_rows(path, value_name=value_name, target=target, progress=progress)
