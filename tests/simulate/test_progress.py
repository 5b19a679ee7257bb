"""Progress bars: on a terminal, once the work has lasted a second; never on a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from scaler.clock import FakeClock
from scaler.progress import Bars


def test_a_bar_shows_only_once_the_work_has_lasted_a_second() -> None:
    clock = FakeClock()
    bars = Bars(Console(file=io.StringIO(), force_terminal=True), clock=clock)
    step = bars.step("reading big.csv")
    step(10, 100)
    assert not bars.shown  # t+0: a quick run prints nothing extra
    clock.advance(1.5)
    step(60, 100)
    assert bars.shown  # t+1.5 s: now it is worth a bar
    bars.close()
    assert not bars.shown


def test_a_pipe_never_gets_a_bar() -> None:
    clock = FakeClock()
    sink = io.StringIO()
    with Bars(Console(file=sink), clock=clock) as bars:
        step = bars.step("reading big.csv")
        clock.advance(60)
        step(50, 100)
        assert not bars.shown
    assert sink.getvalue() == ""


def test_a_new_step_finishes_the_ones_before_it() -> None:
    bars = Bars(Console(file=io.StringIO(), force_terminal=True), clock=FakeClock())
    bars.step("reading")(40, 100)
    bars.step("replaying web")
    first, second = bars.progress.tasks
    assert first.finished and not second.finished
    assert not second.visible  # until it reports progress
