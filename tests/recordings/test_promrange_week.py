"""A week at 15 s for 100 series from a real Prometheus holding that week (backfilled with promtool): fetched in
pieces, several at once, each answer turned into arrays as it arrives, progress told piece by piece."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from scaler.recordings import promrange
from scaler.recordings.load import Recording, load_prometheus_range
from tests.support.prometheus import PROMTOOL, RunningPrometheus, prometheus

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
STEP = 15.0
TICKS = 7 * 86_400 // 15  # 40,320 points per series
SERVICES = 100
K = np.arange(TICKS)


def cpu(j: int) -> np.ndarray:
    """Service j's recorded CPU: quarters, so the OpenMetrics text and the float read back agree exactly."""
    return ((K * (j + 3)) % 397) / 4.0


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    work = tmp_path_factory.mktemp("week")
    source = work / "week.om"
    times = [f"{t:.0f}" for t in T0 + STEP * K]
    with source.open("w") as f:
        f.write("# TYPE app_cpu gauge\n")
        for j in range(SERVICES):
            head = f'app_cpu{{service="svc-{j:03d}"}} '
            f.write("".join(f"{head}{v!r} {t}\n" for v, t in zip(cpu(j).tolist(), times, strict=True)))
        f.write("# EOF\n")
    # one block for the week: promtool reads the whole file once per block, and with 2-hour blocks (84 of
    # them) that took 100 s instead of 7
    done = subprocess.run([str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", "-q",
                           "--max-block-duration=192h", str(source), str(work / "data")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    source.unlink()
    with prometheus(work) as running:
        yield running


@pytest.fixture(scope="module")
def week(prom: RunningPrometheus) -> tuple[Recording, list[tuple[float, float]], int]:
    told: list[tuple[float, float]] = []
    flying, most = 0, 0
    lock = threading.Lock()
    fetch = promrange._fetch

    def counted(*args, **kwargs):
        nonlocal flying, most
        with lock:
            flying += 1
            most = max(most, flying)
        try:
            return fetch(*args, **kwargs)
        finally:
            with lock:
                flying -= 1

    patch = pytest.MonkeyPatch()
    patch.setattr(promrange, "_fetch", counted)
    try:
        rec = load_prometheus_range(prom.url, {"cpu": "max by (service) (app_cpu)"}, start=T0,
                                    end=T0 + (TICKS - 1) * STEP, step=STEP, target_label="service",
                                    progress=lambda done, total: told.append((done, total)))
    finally:
        patch.undo()
    return rec, told, most


def test_a_week_of_a_hundred_series_comes_back_whole(week: tuple[Recording, list, int]) -> None:
    rec, _, _ = week
    assert rec.metrics["cpu"].shape == (SERVICES, TICKS)
    np.testing.assert_array_equal(rec.times, T0 + STEP * K)
    assert rec.step == STEP
    for j in range(SERVICES):
        np.testing.assert_array_equal(rec.metrics["cpu"][rec.targets.index(f"svc-{j:03d}")], cpu(j))


def test_the_week_came_in_pieces_several_at_a_time_with_progress(week: tuple[Recording, list, int]) -> None:
    _, told, most = week
    # an hour first (to count the series), then pieces of at most PIECE_SAMPLES samples
    per = promrange.PIECE_SAMPLES // SERVICES
    pieces = 1 + -(-(TICKS - promrange.PROBE) // per)
    assert told == [(k, pieces) for k in range(1, pieces + 1)]
    assert most > 1 and most <= promrange.CONCURRENCY  # pieces were fetched at once, never more than the bound


def test_a_piece_never_holds_more_than_its_share_of_samples() -> None:
    # 1,000 series: pieces of 1,000 points (11,000 would be 11 M pairs, ~1.6 GB parsed, per piece)
    assert max(1, min(promrange.MAX_POINTS, promrange.PIECE_SAMPLES // 1000)) == 1000
    got = promrange.chunks(T0, T0 + (TICKS - 1) * STEP, STEP, max_points=1000, skip=promrange.PROBE)
    assert got[0][0] == T0 + promrange.PROBE * STEP and got[-1][1] == T0 + (TICKS - 1) * STEP
    assert all(round((last - first) / STEP) + 1 <= 1000 for first, last in got)
