"""The metric-source interface the live loop reads through: one instant query for all targets at once."""

from __future__ import annotations

from typing import Protocol


class MetricSource(Protocol):
    """Answers one query per metric per tick, grouped by the label that names the target.

    Errors are scaler.errors.TransientError / PermanentError; the loop turns any of them into "no data" for
    every target of that metric (never zero).
    """

    def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
        """{value of label `by`: finite value} for every series the query returned at time `now`.

        Series without the label, with a NaN or infinite value, or (for a range-vector result) whose newest
        sample is older than the source's staleness limit are left out: the caller reads a missing key as
        no data for that target.
        """
