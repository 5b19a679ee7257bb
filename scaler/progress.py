"""Progress bars on the terminal for steps that take a while (loading, replaying, writing); quiet otherwise.

A bar appears only when the console is a terminal and the work has gone on for more than `after` seconds (one
by default), so a quick run prints nothing extra and a piped run never does. Steps report `(done, total)` in
whatever unit they count (bytes read, ticks replayed, rows written).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scaler.clock import SystemClock


class Monotonic(Protocol):
    def monotonic(self) -> float: ...


class Bars:
    """A group of progress bars on `console`, shown once the work has lasted `after` seconds.

    with Bars(err) as bars:
        rec = load_recording(path, progress=bars.step("loading big.csv"))
    """

    def __init__(self, console: Console, *, after: float = 1.0, clock: Monotonic | None = None,
                 enabled: bool | None = None) -> None:
        self.clock = clock or SystemClock()
        self.after = after
        self.enabled = console.is_terminal if enabled is None else enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
                                 disable=not self.enabled)
        self.started = self.clock.monotonic()
        self.live = False

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.live:
            self.progress.stop()
            self.live = False

    def step(self, description: str, total: float = 1.0) -> Step:
        """A new bar, for the step after the ones before it (which are done then); call it with (done, total).
        A bar appears once its step has reported progress, and the work has lasted `after` seconds."""
        for task in self.progress.tasks:
            if not task.finished:
                self.progress.update(task.id, completed=task.total)
        return Step(self, self.progress.add_task(description, total=total, visible=False))

    def _touch(self) -> None:
        if not self.live and self.enabled and self.clock.monotonic() - self.started >= self.after:
            self.progress.start()
            self.live = True

    @property
    def shown(self) -> bool:
        return self.live


class Step:
    """One bar: `step(done, total)` moves it."""

    def __init__(self, bars: Bars, task: TaskID) -> None:
        self.bars = bars
        self.task = task

    def __call__(self, done: float, total: float) -> None:
        self.bars.progress.update(self.task, completed=done, total=max(total, 1e-9), visible=True)
        self.bars._touch()
