"""Recorded metrics from Prometheus `query_range` JSON files, and directories of JSON and CSV files merged."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from scaler.errors import DataError
from scaler.recordings.csvfile import DEFAULT_TARGET, decode, read_bytes
from scaler.recordings.csvload import read_csv
from scaler.recordings.model import (
    BLOCK,
    MAX_CELL_CHARS,
    MAX_EPOCH_SECONDS,
    MAX_SERIES,
    MAX_TARGETS,
    MAX_VALUE,
    REPLICAS,
    Problems,
    Recording,
    build,
    merge,
    require_metrics,
    select,
)


def load_prometheus_json(
    path: str | PathLike[str], *, metric: str | None = None, target_label: str | None = None
) -> Recording:
    """Read a saved Prometheus `query_range` answer, or a directory of them and of CSV files.

    A file holds one metric, named `metric` or else the file's stem; a file named `replicas.json` holds the
    replicas serving when recorded. Its content is the whole API response, or its `data`, or just the
    `result` list (what prometheus-api-client returns). Each series is a target, named by its
    `target_label` label, else by the one label whose value differs between series, else "default" when
    there is a single series. NaN and +Inf values are "no data" (+Inf is what Prometheus answers for x/0 in
    a ratio query, which says nothing about load); -Inf, other negative values and values above 1e15 are
    errors. A file nested more than 32 deep or holding more than 10 M samples is refused before it is parsed,
    and the limits of load_csv apply too.

    A directory merges every *.json (one metric each, named by stem) and every *.csv (see load_csv; a
    `value` column is named by the file's stem) on the union of their timestamps; all files must name the
    same targets. There, `metric` keeps only that metric.
    """
    p = Path(path)
    if p.is_dir():
        return load_directory(p, metric=metric, target_label=target_label)
    rec = parse_matrix(read_json(p), source=str(p), metric=metric or p.stem, target_label=target_label)
    return require_metrics(rec)


def load_directory(
    path: Path, *, metric: str | None = None, target: str | None = None, target_label: str | None = None
) -> Recording:
    """Every *.json and *.csv in `path` merged into one Recording; all files' problems reported at once."""
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in (".json", ".csv"))
    if not files:
        raise DataError(str(path), "no .json or .csv files in the directory")
    if len(files) > MAX_SERIES:
        raise DataError(
            str(path), f"{len(files)} .json and .csv files, more than the limit of {MAX_SERIES} metrics and replicas"
        )
    problems = Problems(str(path))
    parts: list[Recording] = []
    for f in files:
        try:
            if f.suffix.lower() == ".json":
                parts.append(
                    parse_matrix(read_json(f), source=str(f), metric=f.stem, target_label=target_label)
                )
            else:
                parts.append(read_csv(f, value_name=f.stem, target=None)[0])
        except DataError as e:
            problems.extend(e.problems, prefix=f"{f.name}: ")
    problems.raise_if_any()
    rec = merge(str(path), parts)
    if metric is not None or target is not None:
        rec = select(rec, metric=metric, target=target)
    return require_metrics(rec)


MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects read. A full query_range answer nests 6 deep ({"data": {"result":
[{"values": [[t, "v"]]}]}}); Python's parser gives up with a RecursionError near 1,000."""
MAX_JSON_SAMPLES = 10_000_000
"""Samples in one JSON file. Each parsed `[time, "value"]` pair costs about 150 bytes, so this is 1.5 GB at most;
a file of MAX_FILE_BYTES holds fewer anyway unless its pairs are very short."""
MAX_JSON_ARRAYS = MAX_JSON_SAMPLES + MAX_TARGETS + 2
"""Arrays in one file: a [time, "value"] pair per sample, a `values` list per series and the `result` list, for
at most MAX_JSON_SAMPLES samples. Counted before parsing."""


def read_json(path: Path) -> Any:
    """The parsed JSON document in `path`, or a DataError with the line and column where it breaks.

    The nesting depth and the number of arrays are counted on the raw bytes first, so a file that would
    exhaust the parser's recursion or allocate millions of pairs is refused before it is parsed.
    """
    raw = read_bytes(path)
    depth, arrays = nesting(raw)
    if depth > MAX_JSON_DEPTH:
        raise DataError(str(path), f"nested {depth:,} deep, more than the limit of {MAX_JSON_DEPTH}")
    if arrays > MAX_JSON_ARRAYS:
        raise DataError(
            str(path),
            f"{arrays:,} JSON arrays: more samples than the limit of {MAX_JSON_SAMPLES:,} in one recording",
        )
    text = decode(path, raw)
    del raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}") from None


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_CHUNK = 1 << 24


def nesting(raw: bytes) -> tuple[int, int]:
    """(deepest nesting of arrays and objects, number of arrays) of JSON text, brackets in strings not counted.

    Escapes occur only inside strings, so dropping them (`\\"`, `\\\\`) leaves every string between a pair of
    quotes; a bracket is outside all strings where an even number of quotes precede it. Vectorized a 16 MB
    chunk at a time, carrying the open depth and whether a string is open into the next.
    """
    raw = _ESCAPE.sub(b"", raw)
    inside, depth, deepest, arrays = 0, 0, 0, 0
    for at in range(0, len(raw), _CHUNK):
        b = np.frombuffer(raw, dtype=np.uint8, count=min(_CHUNK, len(raw) - at), offset=at)
        # quotes seen so far, mod 2 (a uint8 sum wraps at 256, which keeps the parity)
        quoted = (np.cumsum(b == ord('"'), dtype=np.uint8) + inside) & 1
        outside = quoted == 0
        opens = outside & ((b == ord("[")) | (b == ord("{")))
        closes = outside & ((b == ord("]")) | (b == ord("}")))
        arrays += int(np.count_nonzero(outside & (b == ord("["))))
        steps = np.where(opens[opens | closes], 1, -1)
        if steps.size:
            levels = depth + np.cumsum(steps)
            deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        inside = int(quoted[-1]) if b.size else inside
    return deepest, arrays


def parse_matrix(doc: Any, *, source: str, metric: str, target_label: str | None = None) -> Recording:
    """A Recording of one metric from a `query_range` answer (full response, `data`, or `result` list)."""
    result = _result_list(doc, source)
    problems = Problems(source)
    series: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = []
    for i, entry in enumerate(result):
        parsed = _series(entry, f"result[{i}]", problems)
        if parsed is not None:
            series.append(parsed)
    problems.raise_if_any()
    if not series:
        raise DataError(source, "no series in the result (the query matched nothing in its time range)")

    names = target_names([labels for labels, _, _ in series], target_label, problems)
    problems.raise_if_any()
    values = np.concatenate([v for _, _, v in series])
    is_replicas = metric == REPLICAS
    return build(
        source,
        targets=names,
        target_index=np.repeat(np.arange(len(series)), [t.size for _, t, _ in series]),
        times=np.concatenate([t for _, t, _ in series]),
        values={} if is_replicas else {metric: values},
        replicas=values if is_replicas else None,
    )


def target_names(
    labelsets: Sequence[Mapping[str, str]], target_label: str | None, problems: Problems
) -> list[str]:
    """One target name per series, by the naming rule of load_prometheus_json; ambiguities are problems."""
    if target_label is not None:
        names = []
        for i, labels in enumerate(labelsets):
            if target_label not in labels:
                problems.add(f"result[{i}] {_show(labels)}", f"has no {target_label!r} label")
            names.append(labels.get(target_label, ""))
    else:
        keys = sorted({k for labels in labelsets for k in labels})
        varying = [k for k in keys if len({labels.get(k) for labels in labelsets}) > 1]
        if len(labelsets) == 1:
            return [DEFAULT_TARGET]
        if len(varying) != 1:
            which = f"labels {', '.join(map(repr, varying))} all vary" if varying else "no label varies"
            problems.add(
                "",
                f"{len(labelsets)} series and {which}, so which one names the targets is ambiguous:"
                " pass target_label=LABEL (scaler simulate --target-label), or aggregate the query"
                " by one label, e.g. sum by (pod) (...)",
            )
            return []
        (label,) = varying
        names = []
        for i, labels in enumerate(labelsets):
            if label not in labels:
                problems.add(
                    f"result[{i}] {_show(labels)}", f"has no {label!r} label, which names the others"
                )
            names.append(labels.get(label, ""))
        target_label = label
    first_at: dict[str, int] = {}
    for i, name in enumerate(names):
        if name and name in first_at:
            problems.add(
                f"result[{i}] {_show(labelsets[i])}",
                f"names target {name!r} like result[{first_at[name]}]: aggregate the query by"
                f" {target_label!r} so each target is one series",
            )
        first_at.setdefault(name, i)
    return names


def _result_list(doc: Any, source: str) -> list[Any]:
    """The `result` list of any accepted shape, after checking the status and result type."""
    data = doc
    if isinstance(doc, dict) and "status" in doc:
        if doc["status"] != "success":
            kind = doc.get("errorType", "error")
            raise DataError(source, f"Prometheus answered {kind}: {doc.get('error', '(no message)')}")
        data = doc.get("data")
    if isinstance(data, dict) and "result" in data:
        kind = data.get("resultType", "matrix")
        if kind != "matrix":
            raise DataError(
                source,
                f"resultType is {kind!r}, not 'matrix': record with a range query (/api/v1/query_range)",
            )
        data = data["result"]
    if not isinstance(data, list):
        raise DataError(
            source,
            "not a Prometheus query_range answer: expected {'status', 'data'}, {'resultType', 'result'},"
            " or a list of {'metric', 'values'} series",
        )
    return data


def _series(
    entry: Any, where: str, problems: Problems, *, offset: int = 0
) -> tuple[dict[str, str], np.ndarray, np.ndarray] | None:
    """(labels, times, values) of one series, or None after recording why it cannot be read. `offset` numbers
    its pairs from there (a piece of a series fetched in several requests)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), list):
        hint = (
            " (one 'value' is an instant query: record with query_range)" if isinstance(entry, dict) else ""
        )
        problems.add(where, f"not a series with a 'values' list{hint}")
        return None
    labels = entry.get("metric") or {}
    if not isinstance(labels, dict):
        problems.add(where, "'metric' is not a set of labels")
        return None
    labels = {str(k): str(v) for k, v in labels.items()}
    where = f"{where} {_show(labels)}"
    pairs = entry["values"]
    reported = np.zeros(len(pairs), dtype=bool)
    try:
        # one conversion for the whole series; values are strings ("0.25", "NaN", "+Inf") in the API
        times = np.array([p[0] for p in pairs], dtype=np.float64)
        values = _values([p[1] for p in pairs])
        if any(len(p) != 2 for p in pairs):
            raise ValueError("not a pair")
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        times, values, reported = _series_slowly(pairs, where, problems, offset=offset)
    bad = ~np.isfinite(times)
    for j in np.flatnonzero(bad & ~reported):
        problems.add(f"{where}, values[{j + offset}]", f"timestamp {pairs[j][0]!r} is not a finite number of seconds")
    for j in np.flatnonzero(np.abs(np.where(bad, 0, times)) > MAX_EPOCH_SECONDS):
        problems.add(
            f"{where}, values[{j + offset}]",
            f"timestamp {pairs[j][0]!r} looks like milliseconds since the epoch (the API answers seconds)",
        )
    with np.errstate(invalid="ignore"):
        negative = np.flatnonzero(values < 0)
        huge = np.flatnonzero(np.isfinite(values) & (values > MAX_VALUE))
    for j in negative:
        problems.add(f"{where}, values[{j + offset}]", f"negative value {pairs[j][1]!r}")
    for j in huge:
        problems.add(
            f"{where}, values[{j + offset}]", f"{pairs[j][1]!r} is above {MAX_VALUE:g}, more than any metric can read"
        )
    order = np.argsort(times, kind="stable")
    repeated = np.flatnonzero(np.diff(times[order]) == 0)
    for j in repeated:
        problems.add(f"{where}, values[{order[j + 1] + offset}]",
                     f"repeats the timestamp of values[{order[j] + offset}]")
    values[np.isposinf(values)] = np.nan
    return labels, times, values


def _values(raw: list[Any]) -> np.ndarray:
    """Floats from the API's value strings, a block at a time (numpy sizes a text array by its longest
    string); a value longer than MAX_CELL_CHARS is a ValueError, left for _series_slowly to name."""
    values = np.empty(len(raw))
    for at in range(0, len(raw), BLOCK):
        block = raw[at : at + BLOCK]
        try:
            longest = max(map(len, block), default=0)
        except TypeError:  # some values are JSON numbers rather than strings: only the strings can be long
            longest = max((len(v) for v in block if isinstance(v, str)), default=0)
        if longest > MAX_CELL_CHARS:
            raise ValueError("a value too long to be a number")
        values[at : at + len(block)] = np.array(block, dtype=str).astype(np.float64)
    return values


def _series_slowly(pairs: list[Any], where: str, problems: Problems, *, offset: int = 0) -> tuple[np.ndarray, ...]:
    """Pair by pair, naming each one that is not [seconds, "value"]: (times, values, reported mask)."""
    times = np.full(len(pairs), np.nan)
    values = np.full(len(pairs), np.nan)
    reported = np.zeros(len(pairs), dtype=bool)
    for j, p in enumerate(pairs):
        try:
            if isinstance(p, str | bytes) or len(p) != 2:
                raise ValueError
            if isinstance(p[1], str) and len(p[1]) > MAX_CELL_CHARS:
                problems.add(
                    f"{where}, values[{j + offset}]",
                    f"a value of {len(p[1]):,} characters, more than the limit of {MAX_CELL_CHARS}",
                )
                reported[j] = True
                continue
            times[j], values[j] = float(p[0]), float(p[1])
        except (TypeError, ValueError, OverflowError):
            problems.add(f"{where}, values[{j + offset}]", f'expected [seconds, "value"], found {json.dumps(p)[:60]}')
            reported[j] = True
    return times, values, reported


def _show(labels: Mapping[str, str]) -> str:
    """Labels the way PromQL writes them: {pod="web-1", zone="a"}."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
