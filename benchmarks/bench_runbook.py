"""End-to-end time of the real region-failover runbook against a moto server, configured waits excluded.

Everything is real except time spent in configured waits (health-check interval, INSYNC polling, retry
backoff): a clock that skips its sleeps leaves them out, so the number is the engine's own cost plus every
provider call, webhook POST, health probe, journal commit (fsync) and audit line. Target: <= 5 s.

    python benchmarks/bench_runbook.py [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the failover world and local web server come from the test helpers

from scaler.aws import AwsSettings  # noqa: E402
from scaler.runbook.service import RunbookService, Trigger  # noqa: E402
from tests.runbook.helpers import build_world, failover_params, snapshot, web_server  # noqa: E402
from tests.support.moto_server import moto_server  # noqa: E402


@dataclass
class SkippingClock:
    """Real time, except that sleeps are skipped and counted (time moves on as if they had happened)."""

    skipped: float = 0.0

    def now(self) -> float:
        return time.time() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += max(0.0, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    times: list[float] = []
    waits: list[float] = []
    calls = 0
    with moto_server() as moto, web_server() as web:
        for _ in range(args.runs):
            moto.reset()
            with tempfile.TemporaryDirectory() as tmp:
                def client(service: str, region: str) -> object:
                    return boto3.client(service, region_name=region, endpoint_url=moto.url)

                world = build_world(client, frozenset({"dns", "alb", "standby", "flag"}))
                clock = SkippingClock()
                service = RunbookService(runbooks_dir=ROOT / "runbooks", journal_path=Path(tmp) / "journal.db",
                                         audit_path=Path(tmp) / "audit.jsonl", clock=clock,
                                         aws=AwsSettings(region="us-east-1", endpoint_url=moto.url))
                t0 = time.perf_counter()
                run = service.start("region-failover", failover_params(world, web),
                                    trigger=Trigger(kind="manual", who="bench", why="benchmark"))
                times.append(time.perf_counter() - t0)
                if run.status != "succeeded" or snapshot(client, world).roles["west"] != "PRIMARY":
                    raise SystemExit(f"run ended {run.status}: {run.error}")
                waits.append(clock.skipped)
                calls = sum(1 for line in (Path(tmp) / "audit.jsonl").read_text().splitlines()
                            if '"event": "call"' in line)
    print(f"region-failover end to end: median {statistics.median(times):.2f} s, max {max(times):.2f} s over "
          f"{len(times)} runs ({len(run.steps)} steps, {calls} provider/HTTP calls; {statistics.median(waits):g} s "
          f"of configured waits excluded; target <= 5 s)")


if __name__ == "__main__":
    main()
