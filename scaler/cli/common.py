"""What every command shares: consoles sized for pipes, and one clear message for our own errors."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console
from rich.text import Text

from scaler.errors import ScalerError

# Piped output (CI logs, files) gets a wide fixed width so tables are not squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def say(console: Console, mark: str, style: str, text: str) -> None:
    """`mark text` on one line, the mark in `style` and the text exactly as it is: never read as markup, so a
    file named "[bold]web.yaml" or a runbook named "[red]x" is shown, not swallowed as a style."""
    console.print(Text.assemble((mark, style), " ", text), highlight=False, soft_wrap=True)


def plural(n: int, word: str) -> str:
    """'1 step', '3 steps', '1 metric'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def error(text: str, console: Console = err) -> None:
    say(console, "error:", "red", text)


def friendly(fn):
    """Our own errors become one clear message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScalerError as e:
            error(str(e))
            raise typer.Exit(2) from None

    return wrapper
