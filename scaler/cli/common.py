"""What every command shares: consoles sized for pipes, and one clear message for our own errors."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from scaler.errors import ScalerError

# Piped output (CI logs, files) gets a wide fixed width so tables are not squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def friendly(fn):
    """Our own errors become one clear message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScalerError as e:
            err.print(f"[red]error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
