"""Recorded metrics read a column at a time with Arrow: big CSV files, Parquet and Arrow IPC, straight into arrays.

The CSV reader here is the fast way to read what scaler.recordings.csvfile describes: Arrow's multi-threaded
reader turns a block of the file at a time into columns, and numpy checks and converts whole columns. It takes
a file only when it reads it exactly as the row-by-row reader would; at the first problem to report (a cell that
is not a number, a duplicate row) or a spelling only that reader knows (a padded number, `1_000`, a header that
needs quotes), it gives the file back, and the row-by-row reader reads it and names every problem by row and
column. Either way the Recording is the same.

Parquet and Arrow IPC files (long format: `timestamp`, optional `target`, a column per metric, optional
`replicas`) are typed already, so they are read here alone; their rows are numbered from 1 in problems.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaler.errors import DataError, Problem
from scaler.recordings.csvfile import DEFAULT_TARGET, Progress, _columns, _one_time, _Roles, _why_not_time
from scaler.recordings.model import (
    MAX_CELL_CHARS,
    MAX_CELLS,
    MAX_CSV_BYTES,
    MAX_EPOCH_SECONDS,
    MAX_VALUE,
    Problems,
    Recording,
    build,
    duplicate_pairs,
    require_metrics,
    select,
)

if TYPE_CHECKING:
    import pyarrow as pa

COLUMNAR_MIN_BYTES = 1 << 20
"""Smaller CSV files go straight to the row-by-row reader: it reads 1 MiB in a few tens of milliseconds, and
starting Arrow costs about as much."""
READ_BLOCK = 1 << 24
"""Bytes of CSV Arrow parses at a time (each block becomes one batch of columns; 16 MiB is ~600 k rows)."""
BATCH_ROWS = 1 << 20
"""Rows of a Parquet or Arrow file converted at a time."""
_KEEP = 50  # problems of one kind kept per batch with their text (more than a report shows); the rest counted
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc", ".arrows")

_SPACE = " \t\n\r\x0b\x0c"  # ASCII whitespace; a cell padded with anything else goes to the row-by-row reader
_NAN = ("nan", "+nan", "-nan")  # the NaN spellings numpy reads (Arrow also reads 'nan(123)')
# One cell of the column spellings csvfile._COMMON reads at once (UTC, at most microseconds, as Arrow parses)
_COMMON_CELL = r"^\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z?|T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z)$"
# A cell in quotes that Python's csv reader (strict) and Arrow's both read the same way: opened right after a
# comma or a line break, doubled quotes inside, no line break inside, closed right before a comma or line break.
_QUOTED = re.compile(rb'(?:(?<=[,\n\r])|^)"(?:[^"\r\n]|"")*"(?=[,\r\n]|$)', re.MULTILINE)


class _GiveBack(Exception):
    """The CSV needs the row-by-row reader (a problem to name, or a spelling read only there)."""


_POOL_SET = False


def arrow_memory() -> None:
    """Make jemalloc Arrow's allocator for this process (once, unless ARROW_DEFAULT_MEMORY_POOL says otherwise).

    The wheels' default here, mimalloc, reserves address space up front: a process limited to 0.6 GiB of it
    (RLIMIT_AS) could not read a 3 MB CSV. jemalloc reads 100 targets x 1 week (100 MB) in 0.7 s against
    1.2-2.2 s, in less memory, and reuses what it freed rather than faulting fresh pages in."""
    global _POOL_SET
    if _POOL_SET:
        return
    _POOL_SET = True
    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without jemalloc keeps its default
        pass


# ---- CSV


def read_csv_columnar(
    path: Path,
    *,
    value_name: str | None,
    target: str | None,
    progress: Progress | None = None,
    min_bytes: int | None = None,
) -> tuple[Recording, bool] | None:
    """(Recording, whether it had a `value` column) as csvfile.read_csv gives them, or None when the file is
    for the row-by-row reader: smaller than `min_bytes`, over the size limit (refused there), or anything this
    reader does not read exactly as that one does, including every file with a problem to report."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size < (COLUMNAR_MIN_BYTES if min_bytes is None else min_bytes) or size > MAX_CSV_BYTES or size == 0:
        return None
    try:
        arrow_memory()
    except ImportError:  # pragma: no cover - a dependency; without it every file is read row by row
        return None
    try:
        return _read_csv(path, value_name=value_name, target=target, progress=progress)
    except (_GiveBack, OSError, ValueError, MemoryError):
        # MemoryError: Arrow's allocator and threads reserve address space up front, which a process limited in
        # address space (RLIMIT_AS) may not have; the row-by-row reader works within much less
        return None


def _read_csv(
    path: Path, *, value_name: str | None, target: str | None, progress: Progress | None
) -> tuple[Recording, bool]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    source = str(path)
    mm = pa.memory_map(source, "r").read_buffer()  # the file mapped, not read: pages come in as Arrow parses
    header, body_at = _header(mm)
    problems = Problems(source)
    roles = _columns(header, value_name, problems)
    if problems:
        raise _GiveBack
    body = np.frombuffer(mm, dtype=np.uint8)[body_at:]
    if np.count_nonzero(body == ord('"')):
        _check_quotes(body)
    del body
    names = [f"c{i}" for i in range(len(header))]
    reader = pcsv.open_csv(
        pa.BufferReader(mm.slice(body_at)),
        read_options=pcsv.ReadOptions(column_names=names, block_size=READ_BLOCK, use_threads=True),
        parse_options=pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    columns = _Columns(source, roles, header, strict=True)
    total = mm.size
    done = body_at
    try:
        for batch in reader:
            columns.add(batch)
            done = min(total, done + READ_BLOCK)
            if progress is not None:
                progress(done, total)
    except pa.ArrowInvalid as e:  # a row of the wrong width, bytes that are not UTF-8
        raise _GiveBack from e
    return columns.recording(target), roles.had_value


def _header(mm: pa.Buffer) -> tuple[list[str], int]:
    """The header's cells (stripped) and the byte offset where the rows after it start.

    Only a header on one line of UTF-8 is read here: anything else goes to the row-by-row reader.
    """
    head = mm.slice(0, min(mm.size, 64 * MAX_CELL_CHARS * 4)).to_pybytes()
    at = 3 if head[:3] == b"\xef\xbb\xbf" else 0
    while True:
        ends = [i for i in (head.find(b"\n", at), head.find(b"\r", at)) if i >= 0]
        if not ends and len(head) < mm.size:
            raise _GiveBack  # a header line longer than any header of 33 columns of 256 characters
        end = min(ends) if ends else len(head)
        line = head[at:end].decode("utf-8")  # ValueError (not UTF-8): the row-by-row reader names the byte
        after = end + (2 if head[end : end + 2] == b"\r\n" else 1)
        if line.strip(" \t,"):
            if '"' not in line:
                return [cell.strip() for cell in line.split(",")], min(after, mm.size)
            try:  # a quoted header on one line, read as the row-by-row reader reads a file with quotes
                (cells,) = list(csv.reader([line], strict=True))
            except (csv.Error, ValueError):
                raise _GiveBack from None
            return [cell.strip() for cell in cells], min(after, mm.size)
        if end >= len(head):
            raise _GiveBack
        at = after


def _check_quotes(body: np.ndarray) -> None:
    """Give the file back unless every quote in it belongs to a cell both readers read alike (_QUOTED)."""
    quotes = int(np.count_nonzero(body == ord('"')))
    paired = sum(m.group().count(b'"') for m in _QUOTED.finditer(memoryview(body)))
    if paired != quotes:
        raise _GiveBack


# ---- Parquet and Arrow IPC


def is_columnar(path: Path) -> bool:
    """A Parquet or Arrow IPC file, by suffix or by its first bytes ('PAR1', 'ARROW1')."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES or suffix in ARROW_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[:4] == b"PAR1" or head[:6] == b"ARROW1"


def load_table(
    path: str | os.PathLike[str],
    *,
    metric: str | None = None,
    target: str | None = None,
    progress: Progress | None = None,
) -> Recording:
    """Read a Parquet or Arrow IPC file of recorded metrics in long format.

    Columns as in a CSV (scaler.recordings.csvfile.load_csv): `timestamp` (unix seconds as a number, an Arrow
    timestamp of any unit, or text as in a CSV), optional `target` (text), optional `replicas`, and a column
    per metric (numbers; null, NaN and +Inf are no data). `metric` names a `value` column or keeps one metric;
    `target` keeps one target (or names the only one). Its row count is checked against the limit on cells
    before a row is read, and every problem is reported at once, by row (the first row is row 1) and column.
    """
    p = Path(path)
    source = str(p)
    arrow_memory()
    try:
        batches, header, rows = _open_table(p)
    except FileNotFoundError:
        raise DataError(source, "no such file") from None
    except OSError as e:
        raise DataError(source, f"cannot read: {e.strerror or e}") from None
    if rows > MAX_CELLS:
        # each row is at least one (target, time) cell
        raise DataError(source, f"{rows:,} rows, more than the limit of {MAX_CELLS:,} (target, time) cells")
    problems = Problems(source)
    roles = _columns(header, metric, problems)
    if problems:
        raise DataError(source, [Problem(_schema(p.where), p.what) for p in problems.items])
    if rows == 0:
        raise DataError(source, "no data rows")
    columns = _Columns(source, roles, header, strict=False, rows=rows)
    done = 0
    for batch in batches(sorted({i for i in _used(roles)})):
        columns.add(batch)
        done += batch.num_rows
        if progress is not None:
            progress(done, rows)
    rec = columns.recording(None if roles.target is None else target, only=target if roles.target is None else None)
    if metric is not None and not roles.had_value:
        rec = select(rec, metric=metric)
    return require_metrics(rec)


def _schema(where: str) -> str:
    """csvfile._columns places header problems at 'row 1[, column N]'; a table's header is its schema."""
    return where.replace("row 1", "schema", 1)


def _used(roles: _Roles) -> Iterator[int]:
    yield roles.timestamp
    yield from roles.metrics.values()
    if roles.replicas is not None:
        yield roles.replicas
    if roles.target is not None:
        yield roles.target


def _open_table(path: Path):
    """(batches(columns) -> iterator of RecordBatch, column names, row count) of a Parquet or Arrow file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with path.open("rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PAR1" or (path.suffix.lower() in PARQUET_SUFFIXES and magic[:6] != b"ARROW1"):
        try:
            pf = pq.ParquetFile(path, memory_map=True)
        except (pa.ArrowInvalid, pa.ArrowException) as e:
            raise DataError(str(path), f"not a Parquet file: {e}") from None
        header = list(pf.schema_arrow.names)

        def parquet(cols: Sequence[int]) -> Iterator[pa.RecordBatch]:
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=[header[i] for i in cols])

        return parquet, header, int(pf.metadata.num_rows)
    source = pa.memory_map(str(path))
    try:
        reader = pa.ipc.open_file(source)
        header = list(reader.schema.names)
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))

        def arrow_file(cols: Sequence[int]) -> Iterator[pa.RecordBatch]:
            for i in range(reader.num_record_batches):
                yield from _sliced(reader.get_batch(i).select(list(cols)))

        return arrow_file, header, rows
    except pa.ArrowInvalid:
        pass
    try:
        stream = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid as e:
        raise DataError(str(path), f"not a Parquet or Arrow IPC file: {e}") from None
    header = list(stream.schema.names)
    # a stream says its length only at its end: counted on the mapped file first (no copy is made)
    rows = sum(b.num_rows for b in pa.ipc.open_stream(pa.memory_map(str(path))))

    def arrow_stream(cols: Sequence[int]) -> Iterator[pa.RecordBatch]:
        for batch in stream:
            yield from _sliced(batch.select(list(cols)))

    return arrow_stream, header, rows


def _sliced(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for at in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(at, BATCH_ROWS)


# ---- columns into arrays


class _Columns:
    """Batches of rows turned into long-form arrays (times, target numbers, values), checked as they come.

    `strict` (a CSV): the first problem gives the file back to the row-by-row reader. Otherwise (a typed
    table) problems are kept by column and kind, as the CSV reader reports them, with 1-based row numbers.
    """

    def __init__(self, source: str, roles: _Roles, header: Sequence[str], *, strict: bool,
                 rows: int | None = None) -> None:
        self.source = source
        self.roles = roles
        self.header = list(header)
        self.strict = strict
        self.rows = 0
        # a table's row count is known: its columns are filled in place, batch by batch (never a second copy)
        self.whole = None if rows is None else _Whole(rows, list(roles.metrics), roles.replicas is not None)
        self.times: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.values: dict[str, list[np.ndarray]] = {name: [] for name in roles.metrics}
        self.replicas: list[np.ndarray] = []
        self.order: dict[str, int] = {}
        self.found: dict[int, list[Problems]] = {col: [Problems(source) for _ in range(3)] for col in _used(roles)}

    def add(self, batch: pa.RecordBatch) -> None:
        roles = self.roles
        if self.strict:  # a CSV batch: every column, by position
            column = {col: batch.column(col) for col in range(batch.num_columns)}
            for arr in column.values():
                if batch.num_rows and _longest(arr) > MAX_CELL_CHARS:
                    raise _GiveBack
        else:
            names = batch.schema.names
            column = {col: batch.column(names.index(self.header[col])) for col in _used(roles)}
        first = self.rows
        times = self._times(column[roles.timestamp], first)
        values = {name: self._numbers(column[col], col, first) for name, col in roles.metrics.items()}
        replicas = None if roles.replicas is None else self._numbers(column[roles.replicas], roles.replicas, first)
        if roles.target is None:
            codes = np.where(np.isnan(times), -1, 0).astype(np.int32)
        else:
            codes = self._targets(column[roles.target], ~np.isnan(times), first)
        if self.whole is not None:
            self.whole.put(first, times, codes, values, replicas)
        else:
            self.times.append(times)
            self.codes.append(codes)
            for name, v in values.items():
                self.values[name].append(v)
            if replicas is not None:
                self.replicas.append(replicas)
        self.rows += batch.num_rows

    def _problem(self, col: int, kind: int, rows: np.ndarray, first: int, what: Iterator[str]) -> None:
        """File problems of column `col` and `kind` (0, 1, 2: in the order csvfile reports them) at `rows` of a
        batch starting at row `first`; `what` gives the text of each, of the first KEEP at least."""
        if self.strict:
            raise _GiveBack
        group = self.found[col][kind]
        for i, text in zip(rows[:_KEEP].tolist(), what, strict=False):
            group.add(f"row {first + i + 1}, column {self.header[col]!r}", text)
        group.count += max(0, rows.size - _KEEP)

    def _times(self, arr: pa.Array | pa.ChunkedArray, first: int) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc


        col = self.roles.timestamp
        kind = arr.type
        text = None
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            if pa.types.is_date(kind):
                arr = pc.cast(arr, pa.timestamp("s"))
            unit = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[arr.type.unit]
            ticks = pc.cast(arr, pa.int64())
            whole = np.asarray(pc.fill_null(ticks, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            # whole seconds and the fraction apart: nanoseconds since 1970 are past float64's 2**53
            times = (whole // unit).astype(np.float64) + (whole % unit) / unit
            times[_nulls(arr)] = np.nan
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            times, text = _text_times(arr, strict=self.strict)
        elif _numeric(kind):
            times = _floats(arr)
        else:
            raise DataError(self.source, [Problem(f"column {self.header[col]!r}", f"{kind} is not a time")])
        bad = np.flatnonzero(~np.isfinite(times))
        if bad.size:
            nulls = _nulls(arr)

            def why(i: int) -> str:
                if text is not None:
                    return _why_not_time((text[i].as_py() or "").strip())
                return "missing timestamp" if nulls[i] else f"'{times[i]}' is not a finite number of seconds"

            self._problem(col, 0, bad, first, (why(i) for i in bad[:_KEEP].tolist()))
        with np.errstate(invalid="ignore"):
            ms = np.flatnonzero(np.isfinite(times) & (np.abs(times) > MAX_EPOCH_SECONDS))
        if ms.size:
            self._problem(col, 1, ms, first, (f"{_shown(times[i], text, i)} looks like milliseconds since the epoch;"
                                              " write seconds (divide by 1000)" for i in ms[:_KEEP].tolist()))
        times[~np.isfinite(times) | (np.abs(np.nan_to_num(times)) > MAX_EPOCH_SECONDS)] = np.nan
        return times

    def _numbers(self, arr: pa.Array | pa.ChunkedArray, col: int, first: int) -> np.ndarray:
        import pyarrow as pa

        kind = arr.type
        text = None
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values, bad, text = _text_numbers(arr, strict=self.strict)
            if bad.size:
                self._problem(col, 0, bad, first, (f"not a number: {text[i].as_py()!r}" for i in bad[:_KEEP].tolist()))
        elif _numeric(kind):
            values = _floats(arr)
        else:
            raise DataError(self.source, [Problem(f"column {self.header[col]!r}", f"{kind} is not a number")])
        with np.errstate(invalid="ignore"):
            negative = np.flatnonzero(values < 0)
            huge = np.flatnonzero(np.isfinite(values) & (values > MAX_VALUE))
        if negative.size:
            self._problem(col, 1, negative, first,
                          (f"negative value {_shown(values[i], text, i)}" for i in negative[:_KEEP].tolist()))
        if huge.size:
            self._problem(col, 2, huge, first, (f"{_shown(values[i], text, i)} is above {MAX_VALUE:g}, more than any"
                                                " metric can read" for i in huge[:_KEEP].tolist()))
        values[np.isposinf(values)] = np.nan
        return values

    def _targets(self, arr: pa.Array | pa.ChunkedArray, timed: np.ndarray, first: int) -> np.ndarray:
        """Each row's target number (-1: no time or no name), new names numbered in order of first appearance
        among the rows that have both, as csvfile numbers them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_dictionary(arr.type):
            arr = pc.cast(arr, arr.type.value_type)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        uniques = pc.unique(arr)  # in order of first appearance
        raw = uniques.to_pylist()
        long = [i for i, r in enumerate(raw) if r is not None and len(r) > MAX_CELL_CHARS]
        if long:
            if self.strict:
                raise _GiveBack
            raise DataError(self.source, [Problem(f"column {self.header[self.roles.target]!r}",
                                                  f"a name of {len(raw[i]):,} characters, more than the limit of "
                                                  f"{MAX_CELL_CHARS}") for i in long[:20]])
        named = [(r or "").strip() for r in raw]
        where = np.asarray(pc.index_in(arr, value_set=uniques, skip_nulls=False).to_numpy(zero_copy_only=False))
        where = np.nan_to_num(where.astype(np.float64), nan=-1).astype(np.int64) if where.dtype.kind == "f" else where
        empty = np.array([n == "" for n in named], dtype=bool)
        usable = timed.copy()
        if empty.any():
            blank = np.flatnonzero((where < 0) | empty[np.maximum(where, 0)])
            self._problem(self.roles.target, 0, blank, first, ("empty target name" for _ in blank[:_KEEP]))
            usable &= ~empty[np.maximum(where, 0)] & (where >= 0)
        codes = np.full(len(raw), -1, dtype=np.int64)
        if usable.all():
            ranked = range(len(raw))  # pc.unique's order is already that of first appearance
        else:
            present, first_row = np.unique(where[usable], return_index=True)
            ranked = present[np.argsort(first_row, kind="stable")].tolist()
        for k in ranked:
            codes[k] = self.order.setdefault(named[k], len(self.order))
        out = np.full(where.size, -1, dtype=np.int32)  # a target number (at most MAX_TARGETS)
        out[usable] = codes[where[usable]]
        return out

    def recording(self, target: str | None, *, only: str | None = None) -> Recording:
        """The checked arrays as a Recording (duplicates, size and the `target` option as csvfile has them)."""
        roles = self.roles
        if self.whole is not None:
            times, codes, values, replicas = self.whole.taken(self.rows)
            self.whole = None
        else:
            times = np.concatenate(self.times) if self.times else np.empty(0)
            codes = np.concatenate(self.codes) if self.codes else np.empty(0, dtype=np.int32)
            values = {name: np.concatenate(parts) for name, parts in self.values.items()}
            replicas = np.concatenate(self.replicas) if roles.replicas is not None else None
            self.times, self.codes, self.values, self.replicas = [], [], {}, []
        names = list(self.order) if roles.target is not None else [only or DEFAULT_TARGET]
        if self.strict and not self.rows:
            raise _GiveBack  # "no data rows after the header"

        # every row has a time and a target (always so in a CSV taken here): the arrays as they are, no copies
        whole = bool(codes.size) and int(codes.min()) >= 0
        usable = np.arange(codes.size) if whole else np.flatnonzero(codes >= 0)
        axis, col = _axis(times if whole else times[usable])
        # duplicates: cheap to rule out on the (target, time) grid when it is within the limit, else by sorting
        cells = len(names) * axis.size
        if 0 < cells <= MAX_CELLS and usable.size:
            col = np.searchsorted(axis, times if whole else times[usable]) if col is None else col
            flags = np.zeros(cells, dtype=bool)
            cell = (codes if whole else codes[usable]).astype(np.int64)
            cell *= axis.size
            cell += col
            flags[cell] = True
            del cell
            repeated = int(np.count_nonzero(flags)) != usable.size
            del flags
        else:
            repeated = usable.size > 0
        if repeated:
            pairs = duplicate_pairs(codes[usable], times[usable])
            if pairs and self.strict:
                raise _GiveBack
            group = Problems(self.source)
            for later, origin in pairs:
                whose = f" for target {names[codes[usable[later]]]!r}" if roles.target is not None else ""
                group.add(f"row {usable[later] + 1}, column {self.header[roles.timestamp]!r}",
                          f"duplicate of row {usable[origin] + 1}{whose}")
            self._raise(group)
        self._raise(Problems(self.source))

        if roles.target is not None and target is not None:
            if target not in names:
                shown = ", ".join(repr(n) for n in names[:8])
                raise DataError(self.source, f"no rows for target {target!r} (targets: {shown})")
            keep = codes == names.index(target)
            names, codes = [target], np.zeros(int(keep.sum()), dtype=np.int32)
            times = times[keep]
            values = {name: v[keep] for name, v in values.items()}
            replicas = None if replicas is None else replicas[keep]
            whole = False
        if not whole:
            axis = col = None
        return build(self.source, targets=names, target_index=codes, times=times, values=values, replicas=replicas,
                     axis=axis, col=col)

    def _raise(self, duplicates: Problems) -> None:
        if self.strict:
            return
        every = Problems(self.source)
        for col in _used(self.roles):
            for group in self.found[col]:
                every.absorb(group)
        every.absorb(duplicates)
        every.raise_if_any()


class _Whole:
    """A table's columns, allocated once for its known row count and filled batch by batch."""

    def __init__(self, rows: int, metrics: list[str], replicas: bool) -> None:
        self.times = np.empty(rows)
        self.codes = np.empty(rows, dtype=np.int32)
        self.values = {name: np.empty(rows) for name in metrics}
        self.replicas = np.empty(rows) if replicas else None

    def put(self, at: int, times: np.ndarray, codes: np.ndarray, values: dict[str, np.ndarray],
            replicas: np.ndarray | None) -> None:
        end = at + times.size
        self.times[at:end] = times
        self.codes[at:end] = codes
        for name, v in values.items():
            self.values[name][at:end] = v
        if self.replicas is not None and replicas is not None:
            self.replicas[at:end] = replicas

    def taken(self, rows: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        cut = slice(0, rows)  # a stream's count was made from the same file: the same, but never trust past it
        return (self.times[cut], self.codes[cut], {k: v[cut] for k, v in self.values.items()},
                None if self.replicas is None else self.replicas[cut])


# ---- conversions


def _axis(times: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(np.unique(times), each time's index into it, or None to search for it). Rows in time order (how a
    recording is usually exported) take one pass; others sort (40 M times: about 4 s)."""
    if times.size and bool(np.all(times[1:] >= times[:-1])):
        new = np.empty(times.size, dtype=bool)
        new[0] = True
        np.not_equal(times[1:], times[:-1], out=new[1:])
        col = np.cumsum(new, dtype=np.int32 if times.size < 2**31 else np.int64)
        col -= 1
        return times[new], col
    return np.unique(times), None



def _numeric(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _floats(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 numpy array of a numeric column, null as NaN (always a fresh, writable array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_float64(arr.type):
        arr = pc.cast(arr, pa.float64(), safe=False)  # integers past 2**53 round (and are above MAX_VALUE anyway)
    if arr.null_count:
        arr = pc.fill_null(arr, float("nan"))
    out = arr.to_numpy() if isinstance(arr, pa.ChunkedArray) else arr.to_numpy(zero_copy_only=False)
    return np.array(out, dtype=np.float64, copy=True)


def _nulls(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    if not arr.null_count:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _longest(arr: pa.Array | pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return int(pc.max(pc.binary_length(arr)).as_py() or 0)


def _trimmed(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    import pyarrow.compute as pc

    return pc.utf8_trim(arr, _SPACE)


def _text_numbers(arr: pa.Array | pa.ChunkedArray, *, strict: bool) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(floats, rows that are not numbers, the text trimmed) of a text column: empty is NaN, as are the NaN
    spellings and +Inf."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        values = _floats(pc.cast(arr, pa.float64()))
        if _nan_spelled_as_numpy_reads(arr, values):
            return values, np.empty(0, dtype=np.int64), arr
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = _trimmed(arr)
    blank = pc.equal(text, "")
    try:
        values = _floats(pc.cast(pc.if_else(blank, pa.scalar(None, pa.string()), text), pa.float64()))
        if _nan_spelled_as_numpy_reads(text, values, blank=np.asarray(blank.to_numpy(zero_copy_only=False))):
            return values, np.empty(0, dtype=np.int64), text
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if strict:
        raise _GiveBack
    values, bad = _numbers_one_by_one(text)
    return values, bad, text


def _nan_spelled_as_numpy_reads(text: pa.Array, values: np.ndarray, blank: np.ndarray | None = None) -> bool:
    """Whether every NaN came from a spelling numpy and Python read as NaN too (Arrow also reads 'nan(123)')."""
    import pyarrow.compute as pc

    nan = np.isnan(values)
    if blank is not None:
        nan &= ~np.asarray(blank, dtype=bool)
    if not nan.any():
        return True
    spelled = pc.utf8_lower(pc.utf8_trim(pc.take(text, np.flatnonzero(nan)), _SPACE)).to_pylist()
    return all(s in _NAN for s in spelled)


def _numbers_one_by_one(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A table's text column with cells that are not numbers: each cell on its own, as Python reads it."""
    cells = text.to_pylist()
    values = np.full(len(cells), np.nan)
    bad = []
    for i, cell in enumerate(cells):
        if not cell:
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            bad.append(i)
    return values, np.array(bad, dtype=np.int64)


def _shown(value: float, text: pa.Array | None, i: int) -> str:
    """A cell as written (text columns) or as the number it holds."""
    if text is not None:
        return (text[i].as_py() or "").strip()
    return f"{value:.0f}" if value == int(value) and abs(value) < 1e16 else f"{value:g}"


def _text_times(arr: pa.Array | pa.ChunkedArray, *, strict: bool) -> tuple[np.ndarray, pa.Array]:
    """(unix seconds, NaN where unreadable; the text trimmed) of a text column: all numbers (epoch seconds), or
    all in one of the UTC spellings the CSV reader reads at once. Any other CSV column goes to the row-by-row
    reader; a table's is read cell by cell as that reader does."""
    import pyarrow as pa
    import pyarrow.compute as pc


    text = _trimmed(arr)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    try:
        return _floats(pc.cast(text, pa.float64())), text
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if len(text) and pc.all(pc.match_substring_regex(text, _COMMON_CELL)).as_py():
        try:
            stamps = pc.cast(pc.utf8_rtrim(text, "Z"), pa.timestamp("us"))
            return _floats(pc.cast(stamps, pa.int64())) / 1e6, text
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if strict:
        raise _GiveBack
    return np.array([_one_time(c or "") for c in text.to_pylist()], dtype=np.float64), text
