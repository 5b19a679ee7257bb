"""Durations as they appear in YAML ("15s", "5m", "300ms", 1.5) parsed to float seconds; host:port addresses."""

from __future__ import annotations

import math
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds from a number (already seconds) or a Prometheus-style string such as "1m30s".

    Always finite: YAML's `.inf`, "1e400" or a 400-digit number is an error, since no wait, window or
    interval may be endless.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a duration must be a number of seconds or a string like '15s', '5m'")
    try:
        seconds = _spelled(value.strip()) if isinstance(value, str) else float(value)
    except OverflowError:  # float() of an int beyond 1.8e308
        seconds = math.inf
    if seconds is None:
        raise ValueError(f"cannot read {_shown(value)} as a duration (use e.g. '300ms', '15s', '5m', '1h30m')")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {_shown(value)}")
    return seconds


def _shown(value: object, limit: int = 40) -> str:
    """repr(value) for a message, cut short: a 400-digit number is not worth quoting in full."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _spelled(text: str) -> float | None:
    """Seconds from "90", "1.5" or "1m30s"; None if `text` is neither."""
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if text and pos == len(text) else None


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
"""A non-negative duration in seconds; YAML may say 15, "15s", "5m", "1h30m"."""

PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
"""A duration in seconds that must be greater than zero."""


def format_duration(seconds: float) -> str:
    """'1h30m', '15s', '250ms': the shortest exact spelling, for reports."""
    if seconds < 1 and seconds > 0:
        return f"{seconds * 1000:g}ms"
    out, rest = [], float(seconds)
    for unit in ("d", "h", "m"):
        n = int(rest // _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
            rest -= n * _UNITS[unit]
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


def split_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9464' -> ('127.0.0.1', 9464); '[::1]:0' -> ('::1', 0)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port with a port 0-65535, got {value!r}")
    return host.strip("[]"), int(port)


def api_base(url: str) -> str:
    """An HTTP API's base URL as a config may give it: http(s) with a host, no credentials (a URL ends up in logs
    and error messages, and they would too), no query or fragment, and no trailing slash (a client appending
    "/api/v1/query" would make it "//api/v1/query"). ValueError saying which rule it breaks."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("put credentials in basic_auth or bearer_token_*, not in the URL")
    if parts.query or parts.fragment:
        raise ValueError("the URL must not have a query string or fragment")
    return url.strip().rstrip("/")
