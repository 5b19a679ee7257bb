"""Parsing an untrusted JSON body within bounds: UTF-8 only, nesting depth and number length capped, and every
way it can fail reported as one BadJson with a one-line reason."""

from __future__ import annotations

import json
import re
from typing import Any

# Alertmanager's payload nests 4 deep (body -> alerts -> alert -> labels); 32 leaves room for any change of
# format and stops 100 k nested `[` long before the parser's recursion limit (~1,000) would.
MAX_DEPTH = 32
# An int64 has at most 20 characters and a float's repr at most 24; Python's int() of a 5,000-digit string
# raises ValueError (int_max_str_digits is 4,300), and below that limit it costs quadratic time.
MAX_NUMBER_CHARS = 64

# A JSON string, escapes included; an unterminated one runs to the end. Every match attempt succeeds on its
# first, greedy path, so one pass is linear: a pattern that could fail (an unterminated string) would be
# retried at each later quote, and `"\"\"\"...` would cost O(n^2), 4 s for 32 KiB.
_STRING = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class BadJson(ValueError):
    """The body is not JSON this server will take; str() is the reason, on one line."""


def too_deep(text: str, limit: int) -> bool:
    """Whether the brackets outside strings nest more than `limit` deep.

    Strings are dropped first (a "[" inside one is text), so only brackets are walked, and the walk stops one
    level past the limit: 100 k `[` cost 33 steps, and the worst case, 1 MiB of `[]` pairs, about 60 ms.
    """
    depth = 0
    for c in _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii"):
        depth += _STEP[c]
        if depth > limit:
            return True
        if depth < 0:
            return False  # a stray closing bracket: not JSON, and json.loads says where
    return False


def _bounded(kind: type[int] | type[float], limit: int):
    def parse(text: str) -> int | float:
        if len(text) > limit:
            raise BadJson(f"a number of {len(text)} characters (at most {limit})")
        return kind(text)

    return parse


def _no_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON value")


def parse(body: bytes, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """The decoded value of `body`; BadJson naming the first problem found."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadJson(str(e)) from None
    if too_deep(text, max_depth):
        raise BadJson(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_int=_bounded(int, max_number_chars),
                          parse_float=_bounded(float, max_number_chars), parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise BadJson(str(e)) from None
    except RecursionError:  # not reached with a sane max_depth; a 400 all the same if it is
        raise BadJson("nested too deep") from None
