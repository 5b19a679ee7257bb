"""Recorded metrics from CSV: a `timestamp` column, optional `target` and `replicas`, a column per metric."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from os import PathLike
from pathlib import Path

import numpy as np

from scaler.errors import DataError, Problem
from scaler.recordings.model import (
    MAX_EPOCH_SECONDS,
    REPLICAS,
    Problems,
    Recording,
    build,
    duplicate_pairs,
    require_metrics,
    select,
)

TIMESTAMP, TARGET, VALUE = "timestamp", "target", "value"
DEFAULT_TARGET = "default"
"""The name of the one target of a file without a `target` column (and of a single Prometheus series)."""

# a whole column of UTC times with no offset ("2024-05-01 12:00:00", "2024-05-01T12:00:00.250Z"), one per line
_COMMON = re.compile(
    r"(?:\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z?|T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z)"
    r"(?:\n|$))+"
)
# RFC 3339 ("2024-05-01T12:00:00Z", "...:00.250+02:00"), or "2024-05-01 12:00:00" with no zone, read as UTC
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P<sep>[Tt ])(?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?)"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})?"
)


def read_text(path: Path) -> str:
    """The file's text (UTF-8, an optional byte-order mark dropped), or a DataError saying why not."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(str(path), "no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(str(path), f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(str(path), f"cannot read: {e.strerror or e}") from None


def load_csv(path: str | PathLike[str], *, metric: str | None = None, target: str | None = None) -> Recording:
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
    """
    rec, had_value = read_csv(Path(path), value_name=metric, target=target)
    if metric is not None and not had_value:
        rec = select(rec, metric=metric)
    return require_metrics(rec)


def read_csv(path: Path, *, value_name: str | None, target: str | None) -> tuple[Recording, bool]:
    """The Recording in `path`, and whether it had a `value` column (then named `value_name`)."""
    source = str(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(source, "the file is empty (expected a header such as 'timestamp,value' and rows)")

    rows, lines = _rows(text, source)
    if not rows:
        raise DataError(source, "the file has no rows, only separators")
    header = [cell.strip() for cell in rows[0]]
    problems = Problems(source)
    roles = _columns(header, value_name, problems)
    problems.raise_if_any()
    if len(rows) == 1:
        raise DataError(source, "no data rows after the header")

    # rows with the wrong number of cells are reported and left out, the rest parse column by column
    width = len(header)
    good = [i for i in range(1, len(rows)) if len(rows[i]) == width]
    for i in range(1, len(rows)):
        if len(rows[i]) != width:
            problems.add(f"row {lines[i]}", f"{len(rows[i])} cells, but the header names {width} columns")
    body = [rows[i] for i in good]
    row_lines = np.array([lines[i] for i in good], dtype=np.int64)
    cells = list(zip(*body, strict=True)) if body else [() for _ in header]

    times = _parse_times(cells[roles.timestamp], row_lines, header[roles.timestamp], problems)
    metrics = {
        name: _parse_numbers(cells[col], row_lines, header[col], problems)
        for name, col in roles.metrics.items()
    }
    replicas = (
        None
        if roles.replicas is None
        else _parse_numbers(cells[roles.replicas], row_lines, header[roles.replicas], problems)
    )
    if roles.target is None:
        names = np.full(len(body), target or DEFAULT_TARGET)
    else:
        names = np.char.strip(np.asarray(cells[roles.target], dtype=str))
        for i in np.flatnonzero(names == ""):
            problems.add(f"row {row_lines[i]}, column {header[roles.target]!r}", "empty target name")

    usable = ~np.isnan(times) & (names != "")
    usable_at = np.flatnonzero(usable)
    # targets numbered in order of first appearance, without a Python loop over the rows
    found, first_row, inverse = np.unique(names[usable_at], return_index=True, return_inverse=True)
    rank = np.empty(found.size, dtype=np.int64)
    rank[np.argsort(first_row)] = np.arange(found.size)
    order_names = [str(n) for n in found[np.argsort(first_row)]]
    target_index = np.full(names.size, -1, dtype=np.int64)
    target_index[usable_at] = rank[inverse]
    for later, first in duplicate_pairs(target_index[usable_at], times[usable_at]):
        row, prev = row_lines[usable_at[later]], row_lines[usable_at[first]]
        whose = f" for target {str(names[usable_at[later]])!r}" if roles.target is not None else ""
        problems.add(f"row {row}, column {header[roles.timestamp]!r}", f"duplicate of row {prev}{whose}")
    problems.raise_if_any()

    if roles.target is not None and target is not None:
        if target not in order_names:
            shown = ", ".join(repr(n) for n in order_names[:8])
            raise DataError(source, f"no rows for target {target!r} (targets: {shown})")
        keep = names == target
        order_names, target_index = [target], np.zeros(int(keep.sum()), dtype=np.int64)
        times = times[keep]
        metrics = {name: v[keep] for name, v in metrics.items()}
        replicas = None if replicas is None else replicas[keep]

    rec = build(
        source,
        targets=order_names,
        target_index=target_index,
        times=times,
        values=metrics,
        replicas=replicas,
    )
    return rec, roles.had_value


def _rows(text: str, source: str) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows and the file line each starts on (the header is line 1)."""
    if '"' not in text:
        # without quotes each line is one row and csv would only split on commas; this is ~5x faster
        numbered = [(n, line.split(",")) for n, line in enumerate(text.split("\n"), 1) if line.strip(" \t,")]
        return [row for _, row in numbered], [n for n, _ in numbered]
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text), strict=True)  # an unclosed quote is an error, not a cell
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):  # blank lines carry nothing
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1  # a quoted cell may span lines: a row starts after the last one
    except csv.Error as e:
        raise DataError(source, [Problem(f"row {reader.line_num}", f"not valid CSV: {e}")]) from None
    return rows, lines


class _Roles:
    """Which column plays which part: indices into the header."""

    def __init__(self) -> None:
        self.timestamp = -1
        self.target: int | None = None
        self.replicas: int | None = None
        self.metrics: dict[str, int] = {}
        self.had_value = False


def _columns(header: list[str], value_name: str | None, problems: Problems) -> _Roles:
    """The role of each header cell; a `value` column becomes `value_name` (or replicas if so named)."""
    roles = _Roles()
    lowered = [h.lower() for h in header]
    if TIMESTAMP not in lowered:
        first = header[0] if header else ""
        if _looks_like_time(first):
            problems.add(
                "row 1", f"no header: the first line must name the columns, e.g. '{TIMESTAMP},{VALUE}'"
            )
        else:
            problems.add("row 1", f"no {TIMESTAMP!r} column (columns: {', '.join(map(repr, header))})")
        return roles
    seen: dict[str, int] = {}
    for col, (name, low) in enumerate(zip(header, lowered, strict=True)):
        where = f"row 1, column {col + 1}"
        if not name:
            problems.add(where, "empty column name")
            continue
        key = low if low in (TIMESTAMP, TARGET, REPLICAS, VALUE) else name
        if key in seen:
            problems.add(where, f"column {name!r} repeats column {seen[key] + 1}")
            continue
        seen[key] = col
        if key == TIMESTAMP:
            roles.timestamp = col
        elif key == TARGET:
            roles.target = col
        elif key == REPLICAS:
            roles.replicas = col
        elif key != VALUE:
            roles.metrics[name] = col
    if VALUE in seen:
        roles.had_value = True
        where = f"row 1, column {seen[VALUE] + 1}"
        if value_name is None:
            problems.add(
                where,
                f"the {VALUE!r} column needs a metric name: pass metric=NAME (scaler simulate --metric NAME)",
            )
        elif value_name == REPLICAS and roles.replicas is None:
            roles.replicas = seen[VALUE]
        elif value_name in roles.metrics or value_name in (TIMESTAMP, TARGET, REPLICAS):
            problems.add(
                where, f"the {VALUE!r} column cannot be named {value_name!r}: another column has that name"
            )
        else:
            roles.metrics[value_name] = seen[VALUE]
    if not roles.metrics and not problems and roles.replicas is None:
        problems.add("row 1", f"no metric columns besides {TIMESTAMP!r}, {TARGET!r} and {REPLICAS!r}")
    return roles


def _looks_like_time(cell: str) -> bool:
    cell = cell.strip()
    try:
        float(cell)
        return True
    except ValueError:
        return _DATETIME.fullmatch(cell) is not None


def _parse_numbers(cells: tuple[str, ...], lines: np.ndarray, column: str, problems: Problems) -> np.ndarray:
    """Floats from one column: empty, NaN and +Inf cells are NaN; other text and negatives are problems."""
    text = np.char.strip(np.asarray(cells, dtype=str))
    blank = text == ""
    try:
        # the whole column at once; only a column with a bad cell falls back to one cell at a time
        values = np.where(blank, "nan", text).astype(np.float64)
    except ValueError:
        values = np.full(text.shape, np.nan)
        for i in np.flatnonzero(~blank):
            try:
                values[i] = float(text[i])
            except ValueError:
                problems.add(f"row {lines[i]}, column {column!r}", f"not a number: {str(text[i])!r}")
    with np.errstate(invalid="ignore"):
        negative = np.flatnonzero(values < 0)
    for i in negative:
        problems.add(f"row {lines[i]}, column {column!r}", f"negative value {str(text[i])}")
    values[np.isposinf(values)] = np.nan
    return values


def _parse_times(cells: tuple[str, ...], lines: np.ndarray, column: str, problems: Problems) -> np.ndarray:
    """Unix seconds from one column; unreadable cells are problems and come back NaN."""
    text = np.char.strip(np.asarray(cells, dtype=str))
    try:
        times = text.astype(np.float64)  # all numeric: epoch seconds
    except ValueError:
        times = _common_datetimes(text)
        if times is None:
            times = np.array([_one_time(str(c)) for c in text.tolist()], dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(times)):
        problems.add(f"row {lines[i]}, column {column!r}", _why_not_time(str(text[i])))
    too_big = np.flatnonzero(np.isfinite(times) & (np.abs(np.nan_to_num(times)) > MAX_EPOCH_SECONDS))
    for i in too_big:
        problems.add(
            f"row {lines[i]}, column {column!r}",
            f"{str(text[i])} looks like milliseconds since the epoch; write seconds (divide by 1000)",
        )
    times[~np.isfinite(times) | (np.abs(times) > MAX_EPOCH_SECONDS)] = np.nan
    return times


def _common_datetimes(text: np.ndarray) -> np.ndarray | None:
    """Unix seconds for a column written all in UTC as 'YYYY-MM-DD HH:MM:SS' or '...T...Z', else None.

    One regular-expression match over the joined column checks every cell, and numpy parses them all at
    once: a 20k-row file takes ~5 ms instead of ~100 ms cell by cell. Anything else (offsets, bad cells)
    returns None and takes the slow path, which also names the bad cells.
    """
    if not _COMMON.fullmatch("\n".join(text.tolist())):
        return None
    try:
        # microseconds, as fromisoformat keeps; nanoseconds would overflow silently after the year 2262
        stamps = np.char.rstrip(text, "Z").astype("datetime64[us]")
    except ValueError:  # matched the shape but not the calendar, e.g. month 13
        return None
    return stamps.astype(np.int64) / 1e6


def _one_time(cell: str) -> float:
    """Unix seconds from one cell, NaN if it is not a timestamp this format accepts."""
    m = _DATETIME.fullmatch(cell)
    if m is None:
        try:
            return float(cell)
        except ValueError:
            return np.nan
    if m["zone"] is None and m["sep"] != " ":
        return np.nan
    zone = m["zone"] or "Z"  # only the space-separated form may omit the zone, and it means UTC
    try:
        return datetime.fromisoformat(
            f"{m['date']}T{m['time']}{'+00:00' if zone in 'Zz' else zone}"
        ).timestamp()
    except ValueError:
        return np.nan


def _why_not_time(cell: str) -> str:
    if not cell:
        return "missing timestamp"
    m = _DATETIME.fullmatch(cell)
    if m is not None and m["zone"] is None and m["sep"] != " ":
        return (
            f"{cell!r} has no time zone: add 'Z' or an offset such as +02:00"
            " (only 'YYYY-MM-DD HH:MM:SS' is read as UTC)"
        )
    if m is not None:
        return f"{cell!r} is not a valid date and time"
    try:
        float(cell)
        return f"{cell!r} is not a finite number of seconds"
    except ValueError:
        return (
            f"cannot read {cell!r} as a timestamp (unix seconds, RFC 3339, or 'YYYY-MM-DD HH:MM:SS' in UTC)"
        )
