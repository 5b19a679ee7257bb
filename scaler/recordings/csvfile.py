"""Recorded metrics from CSV: a `timestamp` column, optional `target` and `replicas`, a column per metric."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from os import PathLike
from pathlib import Path

import numpy as np

from scaler.errors import DataError, Problem
from scaler.recordings.model import (
    BLOCK,
    MAX_CELL_CHARS,
    MAX_EPOCH_SECONDS,
    MAX_FILE_BYTES,
    MAX_SERIES,
    MAX_VALUE,
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


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DataError saying why not. A file over MAX_FILE_BYTES is refused by its size before
    it is read (and a pipe or device that keeps giving is cut off one byte past the limit)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(MAX_FILE_BYTES + 1) if size <= MAX_FILE_BYTES else b""
    except FileNotFoundError:
        raise DataError(str(path), "no such file") from None
    except OSError as e:
        raise DataError(str(path), f"cannot read: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES or len(raw) > MAX_FILE_BYTES:
        shown = f"{size:,} bytes, more" if size > MAX_FILE_BYTES else "more bytes"
        raise DataError(str(path), f"{shown} than the limit of {MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES >> 20} MiB)")
    return raw


def decode(path: Path, raw: bytes) -> str:
    """UTF-8 text with an optional byte-order mark dropped and every line ending (CR LF, CR) read as LF, as
    reading a file as text does; or a DataError naming the first byte that is not UTF-8."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(str(path), f"not UTF-8 text (byte {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_text(path: Path) -> str:
    """The file's text (UTF-8, an optional byte-order mark dropped), or a DataError saying why not."""
    return decode(path, read_bytes(path))


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

    Sizes are bounded before the memory they need is taken (scaler.recordings.model): a file over 64 MiB is
    refused unread, a cell over 256 characters before any cell is parsed, a value above 1e15 like a negative
    one, and more than 32 metric columns, 10,000 targets or 10 M (target, time) cells before the arrays.
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
    del rows, body
    _refuse_long_cells(cells, row_lines, header, problems)

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
        order_names = [target or DEFAULT_TARGET]
        target_index = np.where(np.isnan(times), -1, 0)
    else:
        order_names, target_index = _number_targets(
            cells[roles.target], ~np.isnan(times), row_lines, header[roles.target], problems
        )

    usable_at = np.flatnonzero(target_index >= 0)
    for later, first in duplicate_pairs(target_index[usable_at], times[usable_at]):
        row, prev = row_lines[usable_at[later]], row_lines[usable_at[first]]
        whose = f" for target {order_names[target_index[usable_at[later]]]!r}" if roles.target is not None else ""
        problems.add(f"row {row}, column {header[roles.timestamp]!r}", f"duplicate of row {prev}{whose}")
    problems.raise_if_any()

    if roles.target is not None and target is not None:
        if target not in order_names:
            shown = ", ".join(repr(n) for n in order_names[:8])
            raise DataError(source, f"no rows for target {target!r} (targets: {shown})")
        keep = target_index == order_names.index(target)
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
        if len(name) > MAX_CELL_CHARS:
            problems.add(where, f"a name of {len(name):,} characters, more than the limit of {MAX_CELL_CHARS}")
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
    series = len(roles.metrics) + (roles.replicas is not None)
    if series > MAX_SERIES:
        problems.add("row 1", f"{series} metric and replicas columns, more than the limit of {MAX_SERIES}")
    return roles


def _looks_like_time(cell: str) -> bool:
    cell = cell.strip()
    try:
        float(cell)
        return True
    except ValueError:
        return _DATETIME.fullmatch(cell) is not None


def _stripped(cells: Sequence[str]) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, cells stripped of surrounding blanks as a numpy text array) for each BLOCK of a column.

    numpy sizes a text array by its longest cell at 4 bytes a character, so the column is converted a block at
    a time: a few long cells cost one block's width, not the whole column's.
    """
    for at in range(0, max(len(cells), 1), BLOCK):
        yield at, np.char.strip(np.asarray(cells[at : at + BLOCK], dtype=str))


def _refuse_long_cells(
    columns: Sequence[Sequence[str]], lines: np.ndarray, header: list[str], problems: Problems
) -> None:
    """Raise every cell longer than MAX_CELL_CHARS, with the problems found so far, before any cell is parsed."""
    long = [col for col, cells in enumerate(columns) if cells and max(map(len, cells)) > MAX_CELL_CHARS]
    for col in long:
        for i, cell in enumerate(columns[col]):
            if len(cell) > MAX_CELL_CHARS:
                problems.add(
                    f"row {lines[i]}, column {header[col]!r}",
                    f"a cell of {len(cell):,} characters, more than the limit of {MAX_CELL_CHARS}",
                )
    if long:
        problems.raise_if_any()


def _number_targets(
    cells: Sequence[str], timed: np.ndarray, lines: np.ndarray, column: str, problems: Problems
) -> tuple[list[str], np.ndarray]:
    """(target names in order of first appearance, each row's index into them): -1 for a row with no name or
    no timestamp. An empty name is a problem.

    Numbered a block at a time (np.unique per block, a dict across blocks), never as one wide text array.
    """
    order: dict[str, int] = {}
    index = np.full(len(cells), -1, dtype=np.int64)
    for at, names in _stripped(cells):
        for i in np.flatnonzero(names == ""):
            problems.add(f"row {lines[at + i]}, column {column!r}", "empty target name")
        usable = np.flatnonzero(timed[at : at + names.size] & (names != ""))
        found, first_row, inverse = np.unique(names[usable], return_index=True, return_inverse=True)
        for k in np.argsort(first_row, kind="stable"):
            order.setdefault(str(found[k]), len(order))
        codes = np.array([order[str(name)] for name in found], dtype=np.int64)
        index[at + usable] = codes[inverse]
    return list(order), index


def _parse_numbers(cells: Sequence[str], lines: np.ndarray, column: str, problems: Problems) -> np.ndarray:
    """Floats from one column: empty, NaN and +Inf cells are NaN; other text, negatives and values above
    MAX_VALUE are problems."""
    values = np.full(len(cells), np.nan)
    for at, text in _stripped(cells):
        blank = text == ""
        try:
            # a block at once; only a block with a bad cell falls back to one cell at a time
            values[at : at + text.size] = np.where(blank, "nan", text).astype(np.float64)
        except ValueError:
            for i in np.flatnonzero(~blank):
                try:
                    values[at + i] = float(text[i])
                except ValueError:
                    problems.add(f"row {lines[at + i]}, column {column!r}", f"not a number: {str(text[i])!r}")
    with np.errstate(invalid="ignore"):
        negative = np.flatnonzero(values < 0)
        huge = np.flatnonzero(np.isfinite(values) & (values > MAX_VALUE))
    for i in negative:
        problems.add(f"row {lines[i]}, column {column!r}", f"negative value {cells[i].strip()}")
    for i in huge:
        problems.add(
            f"row {lines[i]}, column {column!r}",
            f"{cells[i].strip()} is above {MAX_VALUE:g}, more than any metric can read",
        )
    values[np.isposinf(values)] = np.nan
    return values


def _parse_times(cells: Sequence[str], lines: np.ndarray, column: str, problems: Problems) -> np.ndarray:
    """Unix seconds from one column; unreadable cells are problems and come back NaN."""
    times = _epoch_seconds(cells)  # all numeric: epoch seconds
    if times is None:
        times = _common_datetimes(cells)
    if times is None:
        times = np.array([_one_time(c) for _, text in _stripped(cells) for c in text.tolist()], dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(times)):
        problems.add(f"row {lines[i]}, column {column!r}", _why_not_time(cells[i].strip()))
    too_big = np.flatnonzero(np.isfinite(times) & (np.abs(np.nan_to_num(times)) > MAX_EPOCH_SECONDS))
    for i in too_big:
        problems.add(
            f"row {lines[i]}, column {column!r}",
            f"{cells[i].strip()} looks like milliseconds since the epoch; write seconds (divide by 1000)",
        )
    times[~np.isfinite(times) | (np.abs(times) > MAX_EPOCH_SECONDS)] = np.nan
    return times


def _epoch_seconds(cells: Sequence[str]) -> np.ndarray | None:
    """The column as numbers, or None if any cell is not one."""
    times = np.empty(len(cells))
    try:
        for at, text in _stripped(cells):
            times[at : at + text.size] = text.astype(np.float64)
    except ValueError:
        return None
    return times


def _common_datetimes(cells: Sequence[str]) -> np.ndarray | None:
    """Unix seconds for a column written all in UTC as 'YYYY-MM-DD HH:MM:SS' or '...T...Z', else None.

    One regular-expression match over each joined block checks every cell, and numpy parses them all at
    once: a 20k-row file takes ~5 ms instead of ~100 ms cell by cell. Anything else (offsets, bad cells)
    returns None and takes the slow path, which also names the bad cells.
    """
    times = np.empty(len(cells))
    for at, text in _stripped(cells):
        if not _COMMON.fullmatch("\n".join(text.tolist())):
            return None
        try:
            # microseconds, as fromisoformat keeps; nanoseconds would overflow silently after the year 2262
            stamps = np.char.rstrip(text, "Z").astype("datetime64[us]")
        except ValueError:  # matched the shape but not the calendar, e.g. month 13
            return None
        times[at : at + text.size] = stamps.astype(np.int64) / 1e6
    return times


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
