"""The timeline of a run, written a block of targets at a time as the replay produces it: CSV or Parquet.

One row per (policy, target, tick), in that order: `policy, target, time, replicas, ready_replicas, desired`,
then `<metric>, <metric>_smoothed` for every metric of any policy (blank where a policy has no such metric),
then `demand, slo_ok, reason`. timeline.csv is the same bytes the simulator has always written (names that a
spreadsheet would run as a formula start with a quote); timeline.parquet holds the same values typed: counts as
integers, metrics and demand as floats (null where the CSV is blank), `slo_ok` as a boolean (null where no
demand was recorded), `time` as unix seconds, names as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from scaler.decision.reasons import describe
from scaler.policy.model import Policy
from scaler.progress import Bars
from scaler.recordings.columnar import arrow_memory
from scaler.recordings.model import Recording, grid_size
from scaler.simulate import csvbytes
from scaler.simulate.replay import Result
from scaler.simulate.stream import Replay, replay, timeline_metrics
from scaler.simulate.world import World

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["auto", "csv", "parquet"]
LARGE_ROWS = 1_000_000
"""Timeline rows (policies x targets x ticks) above which `--format auto` writes Parquet: a million CSV rows is
about 100 MB of text; 100 targets x 1 week at 15 s x 2 policies is 8 M rows, 846 MB as CSV, ~70 MB as Parquet."""
ROWS_PER_GROUP = 1 << 20
"""Rows per Parquet row group (and per CSV write): each is converted and written, then let go."""

# What spreadsheet software reads as the start of a formula when it opens a CSV file: a target named
# '=HYPERLINK("http://...")' would become a live link. Such a name is written with a leading single quote,
# which shows it as text (OWASP's advice on CSV injection); every other name is written as it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows and never runs: "=1+1" -> "'=1+1"; "web" -> "web"."""
    return "'" + text if text.startswith(FORMULA_START) else text


def columns(metric_names: Sequence[str]) -> list[str]:
    header = ["policy", "target", "time", "replicas", "ready_replicas", "desired"]
    for n in metric_names:
        header += [n, f"{n}_smoothed"]
    return header + ["demand", "slo_ok", "reason"]


def metric_names(policies: Sequence[Policy]) -> list[str]:
    """The union of the policies' metric names, in order of first appearance (the timeline's metric columns)."""
    names: list[str] = []
    for p in policies:
        names += [m.name for m in p.metrics if m.name not in names]
    return names


def choose(requested: Format, rows: int) -> Literal["csv", "parquet"]:
    """The format to write: as asked, or for `auto` CSV up to LARGE_ROWS rows and Parquet past them."""
    if requested != "auto":
        return requested
    return "parquet" if rows > LARGE_ROWS else "csv"


class TimelineWriter(Protocol):
    path: Path

    def write(self, result: Result) -> None:
        """Append the rows of `result`, a replay of some targets with its timeline recorded."""

    def close(self) -> None: ...


def open_timeline(out_dir: Path, fmt: Literal["csv", "parquet"], names: Sequence[str]) -> TimelineWriter:
    """A writer of out_dir/timeline.csv or out_dir/timeline.parquet with metric columns `names`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        return ParquetTimeline(out_dir / "timeline.parquet", names)
    return CsvTimeline(out_dir / "timeline.csv", names)


class _Rows:
    """The rows of one result's timeline, a group of whole targets at a time, as flat (target-major) arrays."""

    def __init__(self, r: Result, names: Sequence[str]) -> None:
        if r.timeline is None:
            raise ValueError("writing a timeline needs a replay that recorded it (simulate(..., record=True))")
        self.r = r
        self.names = names
        self.ticks = len(r.times)
        self.index = {m.name: i for i, m in enumerate(r.policy.metrics)}
        self.reason_codes, self.reasons = _distinct(np.asarray(r.timeline.reasons))

    def groups(self) -> list[slice]:
        per = max(1, ROWS_PER_GROUP // max(self.ticks, 1))
        n = len(self.r.targets)
        return [slice(a, min(n, a + per)) for a in range(0, n, per)]

    def flat(self, arr: np.ndarray, block: slice) -> np.ndarray:
        """(ticks, targets) -> the block's targets one after another."""
        return np.ascontiguousarray(arr[:, block].T).ravel()

    def target_codes(self, block: slice) -> np.ndarray:
        return np.repeat(np.arange(block.start, block.stop), self.ticks)


def _distinct(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct reason masks, each element's index into them): a reason mask is a handful of bits (under
    2**17), so a table over every possible mask does it in one pass where np.unique would sort 8 M values."""
    if masks.size == 0 or masks.min() < 0 or masks.max() >= 1 << 20:
        found, inverse = np.unique(masks, return_inverse=True)
        return found, inverse.reshape(masks.shape)
    seen = np.bincount(masks.ravel(), minlength=1)
    found = np.flatnonzero(seen)
    index = np.zeros(seen.size, dtype=np.int64)
    index[found] = np.arange(found.size)
    return found, index[masks]


class CsvTimeline:
    """timeline.csv, byte for byte as csv.writer with %-formatted numbers writes it, far faster."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        self.path = path
        self.names = list(names)
        self.file = path.open("wb")
        self.file.write(csvbytes.header(columns(self.names)))

    def write(self, r: Result) -> None:
        rows = _Rows(r, self.names)
        tl = r.timeline
        assert tl is not None
        policy = [csvbytes.cell(spreadsheet_text(r.policy.name))]
        targets = [csvbytes.cell(spreadsheet_text(t)) for t in r.targets]
        reasons = [csvbytes.cell(describe(int(m))) for m in rows.reason_codes]
        for block in rows.groups():
            n = (block.stop - block.start) * rows.ticks
            cols: list[csvbytes.Column] = [
                csvbytes.Text(np.zeros(n, dtype=np.int64), policy),
                csvbytes.Text(rows.target_codes(block), targets),
                csvbytes.Whole(np.tile(r.times, block.stop - block.start)),
                csvbytes.Whole(rows.flat(tl.replicas, block)),
                csvbytes.Whole(rows.flat(tl.ready, block)),
                csvbytes.Whole(rows.flat(tl.desired, block)),
            ]
            for name in self.names:
                if name in rows.index:
                    i = rows.index[name]
                    cols += [csvbytes.Fixed(rows.flat(tl.observed[:, i, :], block), 6),
                             csvbytes.Fixed(rows.flat(tl.smoothed[:, i, :], block), 6)]
                else:
                    cols += [csvbytes.Text(np.zeros(n, dtype=np.int64), [""])] * 2
            cols += [
                csvbytes.Fixed(rows.flat(tl.demand, block), 4),
                csvbytes.Text(rows.flat(tl.slo_ok, block).astype(np.int64) + 1, ["", "0", "1"]),
                csvbytes.Text(rows.flat(rows.reasons, block), reasons),
            ]
            self.file.write(csvbytes.rows(cols))

    def close(self) -> None:
        self.file.close()


class ParquetTimeline:
    """timeline.parquet: a row group per block of targets, written as soon as it is replayed."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow_memory()
        self.path = path
        self.names = list(names)
        text = pa.dictionary(pa.int32(), pa.string())
        self.time = pa.timestamp("ms", tz="UTC")  # what pandas, Polars and DuckDB read as a time in UTC
        fields = [pa.field("policy", text), pa.field("target", text), pa.field("time", self.time),
                  pa.field("replicas", pa.int64()), pa.field("ready_replicas", pa.int64()),
                  pa.field("desired", pa.int64())]
        for n in self.names:
            fields += [pa.field(n, pa.float64()), pa.field(f"{n}_smoothed", pa.float64())]
        fields += [pa.field("demand", pa.float64()), pa.field("slo_ok", pa.bool_()), pa.field("reason", text)]
        self.schema = pa.schema(fields)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd", compression_level=1)

    def write(self, r: Result) -> None:
        import pyarrow as pa

        rows = _Rows(r, self.names)
        tl = r.timeline
        assert tl is not None
        targets = pa.array(list(r.targets), pa.string())
        reasons = pa.array([describe(int(m)) for m in rows.reason_codes], pa.string())
        for block in rows.groups():
            n = (block.stop - block.start) * rows.ticks
            arrays: list[pa.Array] = [
                pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([r.policy.name])),
                pa.DictionaryArray.from_arrays(pa.array(rows.target_codes(block).astype(np.int32)), targets),
                pa.array(np.round(np.tile(r.times, block.stop - block.start) * 1000).astype(np.int64), self.time),
                _counts(rows.flat(tl.replicas, block)),
                _counts(rows.flat(tl.ready, block)),
                _counts(rows.flat(tl.desired, block)),
            ]
            for name in self.names:
                if name in rows.index:
                    i = rows.index[name]
                    arrays += [_floats(rows.flat(tl.observed[:, i, :], block)),
                               _floats(rows.flat(tl.smoothed[:, i, :], block))]
                else:
                    arrays += [pa.nulls(n, pa.float64())] * 2
            slo = rows.flat(tl.slo_ok, block)
            arrays += [
                _floats(rows.flat(tl.demand, block)),
                pa.array(slo > 0, mask=slo < 0),
                pa.DictionaryArray.from_arrays(pa.array(rows.flat(rows.reasons, block).astype(np.int32)), reasons),
            ]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=n)

    def close(self) -> None:
        self.writer.close()


def _counts(values: np.ndarray) -> pa.Array:
    """Replica counts as integers (truncated, as the CSV's %d), null where unknown."""
    import pyarrow as pa

    nan = np.isnan(values)
    return pa.array(np.trunc(np.nan_to_num(values)).astype(np.int64), mask=nan if nan.any() else None)


def _floats(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    nan = np.isnan(values)
    return pa.array(values, mask=nan if nan.any() else None)


def write_timeline(results: Sequence[Result], path: Path) -> Path:
    """Every result's recorded timeline into `path` (.parquet: Parquet, else CSV), in one go."""
    fmt: Literal["csv", "parquet"] = "parquet" if path.suffix == ".parquet" else "csv"
    names = metric_names([r.policy for r in results])
    writer = (ParquetTimeline if fmt == "parquet" else CsvTimeline)(path, names)
    try:
        for r in results:
            if r.timeline is not None:
                writer.write(r)
    finally:
        writer.close()
    return path


def replay_to(
    out_dir: Path | None,
    fmt: Format,
    policies: Sequence[Policy],
    rec: Recording,
    world: World,
    *,
    detail: bool = False,
    bars: Bars | None = None,
    **options: Any,
) -> tuple[Replay, Path | None]:
    """Replay every policy, writing the timeline into `out_dir` block by block as it is produced (in `fmt`;
    `auto` picks by size, see choose); no timeline without `out_dir`. Returns the run and the timeline's path.
    A replay that fails part way leaves no timeline behind."""
    if out_dir is None:
        return replay(policies, rec, world, detail=detail, progress=_steps(bars, "replaying"), **options), None
    names = timeline_metrics(policies, rec, world)  # before any file: a recording that does not fit writes nothing
    rows = len(rec.targets) * sum(grid_size(rec, interval=p.interval) for p in policies)
    made = not out_dir.exists()
    writer = open_timeline(out_dir, choose(fmt, rows), names)
    try:
        run = replay(policies, rec, world, sink=writer, detail=detail,
                     progress=_steps(bars, f"replaying and writing {writer.path.name}"), **options)
    except BaseException:
        writer.close()
        writer.path.unlink(missing_ok=True)
        if made and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    writer.close()
    return run, writer.path


def _steps(bars: Bars | None, doing: str):
    if bars is None:
        return None
    return lambda policy: bars.step(f"{doing}: {policy.name}")
