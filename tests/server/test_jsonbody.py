"""Bounded JSON parsing: what is taken, what is refused and with which one-line reason, and what it costs."""

from __future__ import annotations

import time

import pytest

from scaler.server.jsonbody import BadJson, parse, too_deep


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a": [[1], [2]]}', {"a": [[1], [2]]}),
        (b"[" * 32 + b"]" * 32, eval("[" * 31 + "[]" + "]" * 31)),
        (b'"' + b"[" * 1000 + b'"', "[" * 1000),  # brackets inside a string are text
        (b'["a\\"[[[[", {"b": "}}}"}]', ['a"[[[[', {"b": "}}}"}]),  # so are they after an escaped quote
        (b"-" + b"9" * 63, -int("9" * 63)),
        (b"1.5e300", 1.5e300),
        ('{"région": "é"}'.encode(), {"région": "é"}),
    ],
    ids=["alertmanager-shape", "depth-32", "brackets-in-string", "escaped-quote", "64-char-int", "float",
         "utf-8"],
)
def test_taken(body: bytes, value: object) -> None:
    assert parse(body) == value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 33 + b"]" * 33, "nested deeper than 32 levels"),
        (b"[" * 100_000, "nested deeper than 32 levels"),
        (b'{"a":' * 50_000, "nested deeper than 32 levels"),
        (b"[" * 40 + b"}" * 40, "nested deeper than 32 levels"),  # mismatched, and too deep for the parser
        (b"9" * 65, "a number of 65 characters (at most 64)"),
        (b"[1." + b"0" * 5000 + b"]", "a number of 5002 characters (at most 64)"),
        (b"[NaN]", "NaN is not a JSON value"),
        (b"-Infinity", "-Infinity is not a JSON value"),
        (b"{nope", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"[1, 2", "Expecting ',' delimiter: line 1 column 6 (char 5)"),
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe{}", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        ('{"a": 1}'.encode("utf-16"), "'utf-8' codec can't decode byte 0xff in position 0"),
    ],
    ids=["depth-33", "100k-arrays", "50k-objects", "mismatched-deep", "65-char-int", "5000-digit-float", "nan",
         "infinity", "bad-syntax", "unfinished", "empty", "not-utf-8", "utf-16"],
)
def test_refused_with_one_line(body: bytes, reason: str) -> None:
    with pytest.raises(BadJson) as e:
        parse(body)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_limits_are_parameters() -> None:
    assert parse(b"[[1]]", max_depth=2) == [[1]]
    with pytest.raises(BadJson, match="nested deeper than 1 levels"):
        parse(b"[[1]]", max_depth=1)
    with pytest.raises(BadJson, match="a number of 3 characters"):
        parse(b"123", max_number_chars=2)


@pytest.mark.parametrize(
    "text",
    ["[]" * 500_000, "[" * 500_000 + "]" * 500_000, '["' + "[" * 1_000_000 + '"]', "[" * 1_000_000,
     '"' + '\\"' * 500_000],
    ids=["wide", "deep", "one-long-string", "unclosed", "escaped-quotes-never-closed"],
)
def test_the_depth_check_of_a_1_mib_body_is_cheap(text: str) -> None:
    # Linear in the body, and the walk stops one level past the limit: ~60 ms at worst here. The last case
    # took 4 s for 32 KiB with a string pattern that could fail and be retried at every later quote.
    t0 = time.perf_counter()
    too_deep(text, 32)
    assert time.perf_counter() - t0 < 1.0
