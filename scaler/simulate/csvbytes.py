"""CSV rows as bytes, a block of rows at a time, exactly as Python's csv writer and %-formatting write them.

timeline.csv has always been written cell by cell (`"%d" % x`, `"%.6f" % x` with trailing zeros dropped, then
`csv.writer`), about 70,000 rows a second: 8 M rows took two minutes. Here each column becomes digits in a
(rows, width) byte matrix, right-aligned and padded with NUL bytes; dropping the NULs leaves the rows one after
another, the same bytes the old writer gave (tests/simulate/test_timeline_output.py compares the two). Numbers
the integer arithmetic cannot place for certain (within a few units in the last place of a rounding tie, or
too large for 53 bits) are formatted by Python, row by row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NUL, COMMA, MINUS, DOT, ZERO = 0, ord(","), ord("-"), ord("."), ord("0")
LINE_END = b"\r\n"  # csv.writer's default line terminator


@dataclass(frozen=True)
class Text:
    """A column of a few distinct strings: `codes` index into `table` (already as the file should show them)."""

    codes: np.ndarray
    table: Sequence[str]


@dataclass(frozen=True)
class Whole:
    """`"%d" % x` of each value (truncated toward zero), NaN as an empty cell."""

    values: np.ndarray


@dataclass(frozen=True)
class Fixed:
    """`"%.{digits}f" % x` with trailing zeros and a bare point dropped, NaN as an empty cell."""

    values: np.ndarray
    digits: int


Column = Text | Whole | Fixed


def cell(text: str) -> str:
    """A string as csv.writer writes it in a row of several cells (quoted when it holds a comma, quote or line
    break; quotes doubled)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["x", text])
    return buffer.getvalue()[2 : -len(LINE_END)]


def header(names: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(list(names))
    return buffer.getvalue().encode()


CHUNK = 1 << 18
"""Rows laid out at a time: the (width, rows) matrix of a chunk stays within a few tens of MB."""


def rows(columns: Sequence[Column]) -> bytes:
    """The CSV bytes of the rows `columns` hold (all the same length), each line ending in CR LF."""
    n = _length(columns[0])
    return b"".join(_chunk(columns, a, min(n, a + CHUNK)) for a in range(0, n, CHUNK))


def _chunk(columns: Sequence[Column], a: int, b: int) -> bytes:
    cells = [_text(c, a, b) if isinstance(c, Text) else _whole(c.values[a:b]) if isinstance(c, Whole) else
             _fixed(c.values[a:b], c.digits) for c in columns]
    n = b - a
    # column-major: each byte position of the row is one contiguous run of n bytes, so every step below is a
    # plain vector operation; the transpose happens once, in tobytes
    matrix = np.empty((sum(c.width for c in cells) + len(cells) - 1 + len(LINE_END), n), dtype=np.uint8)
    slow = np.zeros(n, dtype=bool)  # rows with a number the arithmetic cannot place for certain
    at = 0
    for i, c in enumerate(cells):
        if i:
            matrix[at] = COMMA
            at += 1
        c.write(matrix[at : at + c.width])
        slow |= c.slow
        at += c.width
    for k, byte in enumerate(LINE_END):
        matrix[at + k] = byte
    # the NUL padding dropped: bytes.translate deletes it at about 300 MB/s, three times a boolean mask's speed
    packed = matrix.T.tobytes().translate(None, b"\0")
    if not slow.any():
        return packed
    # cut the rows apart and let Python write the few it must
    lengths = np.count_nonzero(matrix, axis=0)
    ends = np.cumsum(lengths)
    out, at = [], 0
    for i in np.flatnonzero(slow).tolist():
        start = int(ends[i] - lengths[i])
        out.append(packed[at:start])
        out.append(_python_row(columns, a + i))
        at = int(ends[i])
    out.append(packed[at:])
    return b"".join(out)


def _length(col: Column) -> int:
    return len(col.codes) if isinstance(col, Text) else len(col.values)


def _python_row(columns: Sequence[Column], i: int) -> bytes:
    """Row i written the old way: %-formatting and csv.writer."""
    cells = []
    for col in columns:
        if isinstance(col, Text):
            cells.append(col.table[int(col.codes[i])])  # already quoted
            continue
        x = float(col.values[i])
        if np.isnan(x):
            cells.append("")
        elif isinstance(col, Whole):
            cells.append("%d" % np.nan_to_num(x))  # noqa: UP031 - the exact formatting being reproduced
        else:
            cells.append(("%.*f" % (col.digits, np.nan_to_num(x))).rstrip("0").rstrip("."))  # noqa: UP031
    return (",".join(cells) + "\r\n").encode()


@dataclass
class _Cells:
    """One column laid out: `write(block)` fills its (width, rows) rows of the matrix; `slow` rows go to Python."""

    width: int
    slow: np.ndarray
    parts: tuple

    def write(self, block: np.ndarray) -> None:
        kind = self.parts[0]
        if kind == "text":
            _, table, codes = self.parts
            for k in range(self.width):
                np.take(table[:, k], codes, out=block[k])
            return
        _, sign, whole, frac, places, blank = self.parts
        w = self.width - (1 + places if places else 0) - 1
        keep = ~blank  # NUL by multiplying with 0/1, not by masks
        block[0] = np.where(sign & keep, MINUS, NUL)
        _digits(block[1 : 1 + w], whole, keep)
        if places:
            tail = block[2 + w :]
            _digits(tail, frac, keep, leading_zeros=True)
            kept = keep.copy()  # trailing zeros dropped, from the last place back
            for j in range(places - 1, -1, -1):
                kept &= tail[j] == ZERO
                tail[j] *= ~kept
            block[1 + w] = np.where(keep & (frac != 0), DOT, NUL)  # no point when no digit follows


def _text(col: Text, a: int, b: int) -> _Cells:
    encoded = [s.encode() for s in col.table]
    width = max((len(e) for e in encoded), default=0)
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    for k, e in enumerate(encoded):
        table[k, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    # a NUL inside a name would vanish with the padding: such rows are written by Python
    has_nul = np.array([b"\0" in e for e in encoded], dtype=bool)
    codes = np.asarray(col.codes[a:b], dtype=np.int64)
    return _Cells(width, has_nul[codes], ("text", np.ascontiguousarray(table.T).T, codes))


_FOUR = np.ascontiguousarray(np.array([list(f"{i:04d}".encode()) for i in range(10_000)], dtype=np.uint8).T)
"""(4, 10000): row k is the k-th digit of 0000 .. 9999."""
_POWERS = 10 ** np.arange(19, dtype=np.int64)


def _digits(block: np.ndarray, x: np.ndarray, keep: np.ndarray, *, leading_zeros: bool = False) -> None:
    """ASCII digits of non-negative int64 `x` right-aligned in `block` (width, rows): four digits per lookup;
    NUL before the first digit (a lone 0 stays) unless `leading_zeros`, and in rows not to `keep`."""
    width = block.shape[0]
    rest = x.copy()
    for right in range(width, 0, -4):
        four = rest % 10_000
        for k in range(max(0, right - 4), right):
            np.take(_FOUR[3 - (right - 1 - k)], four, out=block[k])
        rest //= 10_000
    for k in range(width):
        place = width - 1 - k  # 10**place
        shown = keep if leading_zeros or place == 0 else keep & (x >= _POWERS[place])
        block[k] *= shown


def _width(x: np.ndarray) -> int:
    top = int(x.max()) if x.size else 0
    return max(1, len(str(top)))


_SAFE = 2.0**53  # integers up to here are exact in a float64


def _whole(values: np.ndarray) -> _Cells:
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    truncated = np.trunc(np.nan_to_num(v))
    slow = ~nan & ~(np.abs(truncated) < _SAFE)
    whole = np.where(slow | nan, 0, truncated).astype(np.int64)
    magnitude = np.abs(whole)
    return _Cells(1 + _width(magnitude), slow, ("number", whole < 0, magnitude, None, 0, nan | slow))


def _fixed(values: np.ndarray, places: int) -> _Cells:
    """`"%.{places}f"`: the decimal nearest the exact binary value (ties to even), then stripped.

    x * 10**places is one rounding away from the exact product (within |x * 10**places| * 2**-53), so its
    nearest integer is the exact one's unless the product lies that close to a half: those few, and numbers too
    large for the arithmetic, are left to Python (`slow`).
    """
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.nan_to_num(v) * float(10**places)
        big = ~(np.abs(scaled) < _SAFE / 4)
        half = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5)
    slow = ~nan & (big | (half <= np.abs(scaled) * 2.0**-50 + 1e-300))
    q = np.where(slow | nan, 0, np.abs(np.rint(np.where(big, 0, scaled)))).astype(np.int64)
    unit = 10**places
    whole, frac = q // unit, q % unit
    negative = np.signbit(np.nan_to_num(v))  # "%.6f" % -0.0 and % -1e-9 are "-0.000000": "-0"
    width = 1 + _width(whole) + 1 + places
    return _Cells(width, slow, ("number", negative, whole, frac, places, nan | slow))
