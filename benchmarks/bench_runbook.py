"""End-to-end time of the real region-failover runbook against a moto server, configured waits excluded: with
every region answering, and with the primary region down (every call signed for it answered 503 by a proxy).

Everything is real except time spent in configured waits (health-check interval, INSYNC polling, retry
backoff): a clock that skips its sleeps leaves them out, so the number is the engine's own cost plus every
provider call, webhook POST, health probe, journal commit (fsync) and audit line. Targets: <= 5 s healthy,
<= 10 s with the primary region down (its four best-effort steps fail, the move goes on).

    python benchmarks/bench_runbook.py [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the failover world and local web server come from the test helpers

from scaler.aws import AwsSettings  # noqa: E402
from scaler.runbook.service import RunbookService, Trigger  # noqa: E402
from tests.runbook.helpers import build_world, failover_params, snapshot, web_server  # noqa: E402
from tests.support.moto_server import moto_server  # noqa: E402
from tests.support.outage_proxy import outage_proxy  # noqa: E402


@dataclass
class SkippingClock:
    """Real time, except that sleeps are skipped and counted (time moves on as if they had happened)."""

    skipped: float = 0.0

    def now(self) -> float:
        return time.time() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += max(0.0, seconds)


@dataclass
class Figures:
    times: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    calls: int = 0
    failed: int = 0  # calls that got no useful answer (the down region's)
    steps: int = 0
    warnings: tuple[str, ...] = ()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the outage runs warn about every best-effort step
    figures = {"healthy": Figures(), "primary region down": Figures()}
    with moto_server() as moto, web_server() as web, outage_proxy(moto.url) as proxy:
        for case, seen in figures.items():
            if case == "primary region down":
                proxy.fail("us-east-1")
            for _ in range(args.runs):
                moto.reset()
                with tempfile.TemporaryDirectory() as tmp:
                    def client(service: str, region: str) -> object:
                        return boto3.client(service, region_name=region, endpoint_url=moto.url)

                    world = build_world(client, frozenset({"dns", "alb", "standby", "flag"}))
                    clock = SkippingClock()
                    service = RunbookService(runbooks_dir=ROOT / "runbooks", journal_path=Path(tmp) / "journal.db",
                                             audit_path=Path(tmp) / "audit.jsonl", clock=clock,
                                             aws=AwsSettings(region="us-east-1", endpoint_url=proxy.url))
                    t0 = time.perf_counter()
                    run = service.start("region-failover", failover_params(world, web),
                                        trigger=Trigger(kind="manual", who="bench", why="benchmark"))
                    seen.times.append(time.perf_counter() - t0)
                    if run.status != "succeeded" or snapshot(client, world).roles["west"] != "PRIMARY":
                        raise SystemExit(f"{case}: run ended {run.status}: {run.error}")
                    seen.waits.append(clock.skipped)
                    lines = (Path(tmp) / "audit.jsonl").read_text().splitlines()
                    seen.calls = sum(1 for line in lines if '"event": "call"' in line)
                    seen.failed = sum(1 for line in lines if '"event": "call"' in line and '"error":' in line)
                    seen.steps, seen.warnings = len(run.steps), run.warnings
    for case, seen in figures.items():
        target = 5 if case == "healthy" else 10
        print(f"region-failover, {case}: median {statistics.median(seen.times):.2f} s, max {max(seen.times):.2f} s "
              f"over {len(seen.times)} runs ({seen.steps} steps, {seen.calls} provider/HTTP calls of which "
              f"{seen.failed} failed; {statistics.median(seen.waits):.1f} s of configured waits excluded; "
              f"target <= {target} s)")
        if seen.warnings:
            print(f"  best-effort steps that failed: {', '.join(w.split(':')[0] for w in seen.warnings)}")


if __name__ == "__main__":
    main()
