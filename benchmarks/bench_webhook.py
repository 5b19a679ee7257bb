"""Webhook received -> first provider call over a few runs of the real region-failover, and a burst of
alerts posted at once: how many were answered, and how fast.

Everything runs in this process: a moto server with the failover world, the runbook service, the dispatcher
and the HTTP server. The clock starts just before the alert payload is sent (so it includes the client's own
send) and stops when botocore sends the run's first request (the precondition's Route 53 read).
Target: <= 200 ms.

The burst: `--burst` clients (200, as measured in an alert storm) each open a connection at the same instant
and post a distinct alert; the dispatcher queues runs on a stand-in runbook service, so the figures are the
server's: answers by status, connections reset or refused, and latency from connect to the end of the answer.

    python benchmarks/bench_webhook.py [--runs 5] [--burst 200]      # --runs 0 or --burst 0 skips a part
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.endpoint
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the failover world and local web server come from the test helpers

from scaler.alerts.dispatch import Dispatcher, TriggerMetrics  # noqa: E402
from scaler.alerts.rules import Rule  # noqa: E402
from scaler.aws import AwsSettings  # noqa: E402
from scaler.runbook.service import RunbookService  # noqa: E402
from scaler.server.http import Server, Webhook  # noqa: E402
from scaler.server.serve import warm_clients  # noqa: E402
from tests.runbook.helpers import PRIMARY, build_world, failover_params, web_server  # noqa: E402
from tests.support.fake_runbooks import FakeRunbookService  # noqa: E402
from tests.support.moto_server import moto_server  # noqa: E402

TOKEN = "bench-webhook-token-0123456789"
SENDS: list[float] = []
_lock = threading.Lock()


def _record_sends() -> None:
    """Note the time of every HTTP request botocore sends, from any client in this process."""
    original = botocore.endpoint.Endpoint._send

    def timed(self: botocore.endpoint.Endpoint, request: object) -> object:
        with _lock:
            SENDS.append(time.perf_counter())
        return original(self, request)

    botocore.endpoint.Endpoint._send = timed  # type: ignore[method-assign]


def _payload(starts: datetime, fingerprint: str = "bench0000000001") -> bytes:
    alert = {"status": "firing", "labels": {"alertname": "RegionDown", "region": PRIMARY},
             "annotations": {"summary": "bench"}, "startsAt": starts.isoformat(),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "receiver": "scaler", "status": "firing", "alerts": [alert],
                       "groupLabels": {}, "commonLabels": alert["labels"], "commonAnnotations": {},
                       "externalURL": "", "groupKey": "{}", "truncatedAlerts": 0}).encode()


def first_call(runs: int) -> None:
    """Webhook -> first provider call, over `runs` runs of the real region-failover against moto."""
    _record_sends()
    with moto_server() as moto, web_server() as web, tempfile.TemporaryDirectory() as tmp:
        def client(service: str, region: str) -> object:
            return boto3.client(service, region_name=region, endpoint_url=moto.url)

        world = build_world(client, frozenset({"dns", "alb", "standby", "flag"}))
        params = failover_params(world, web, health_interval="100ms", health_successes="1")
        rule = Rule(name="region-down", match={"alertname": "RegionDown"}, runbook="region-failover",
                    auto=True, params=params)
        service = RunbookService(runbooks_dir=ROOT / "runbooks", journal_path=Path(tmp) / "journal.db",
                                 audit_path=Path(tmp) / "audit.jsonl",
                                 aws=AwsSettings(region=PRIMARY, endpoint_url=moto.url))
        warm_clients(service, PRIMARY)  # as `scaler serve` does before it reports ready
        registry = CollectorRegistry()
        dispatcher = Dispatcher(service=service, rules=[rule])
        latencies: list[float] = []
        with Server(registry=registry, webhook=Webhook(token=TOKEN, submit=dispatcher.submit)) as server:
            base = datetime.now(UTC)
            for i in range(runs):
                body = _payload(base + timedelta(seconds=i))  # a new occurrence each time, so a new run
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                with _lock:
                    SENDS.clear()
                t0 = time.perf_counter()
                conn.request("POST", "/alertmanager", body=body, headers={
                    "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                status = conn.getresponse().status
                conn.close()
                if status != 202:
                    raise SystemExit(f"webhook answered {status}")
                dispatcher.drain(timeout=120)  # one run at a time: the next would be refused as busy
                with _lock:
                    first = min((t for t in SENDS if t >= t0), default=None)
                if first is None:
                    raise SystemExit("the run made no provider call")
                latencies.append((first - t0) * 1000)
        dispatcher.close()
        statuses = sorted({r.status for r in service.status()})
    print(f"webhook -> first provider call: median {statistics.median(latencies):.1f} ms, "
          f"max {max(latencies):.1f} ms over {len(latencies)} runs (target <= 200 ms; runs: "
          f"{', '.join(statuses)})")



def _percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def burst(n: int) -> None:
    """Post n distinct alerts at the same instant, each on its own connection, and print what came back."""
    registry = CollectorRegistry()
    service = FakeRunbookService()
    rule = Rule(name="region-down", match={"alertname": "RegionDown"}, runbook="region-failover", auto=True)
    dispatcher = Dispatcher(service=service, rules=[rule], metrics=TriggerMetrics(registry))
    base = datetime.now(UTC)
    bodies = [_payload(base, fingerprint=f"burst{i:011d}") for i in range(n)]
    start = threading.Barrier(n)
    results: list[tuple[int | str, float]] = []
    lock = threading.Lock()

    def post(port: int, body: bytes) -> None:
        start.wait()
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/alertmanager", body=body, headers={
                "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            outcome: int | str = resp.status
        except OSError as e:
            outcome = type(e).__name__
        with lock:
            results.append((outcome, (time.perf_counter() - t0) * 1000))

    with Server(registry=registry, webhook=Webhook(token=TOKEN, submit=dispatcher.submit)) as server:
        threads = [threading.Thread(target=post, args=(server.port, b)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    dispatcher.drain(timeout=60)
    dispatcher.close()
    by = Counter(outcome for outcome, _ in results)
    answered = [ms for outcome, ms in results if isinstance(outcome, int)]
    failed = ", ".join(f"{k}: {v}" for k, v in by.items() if not isinstance(k, int)) or "none"
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted((k, v) for k, v in by.items() if isinstance(k, int)))
    timing = (f"p50 {_percentile(answered, 50):.1f} ms, p99 {_percentile(answered, 99):.1f} ms, "
              f"max {max(answered):.1f} ms" if answered else "no answers")
    print(f"burst of {n} concurrent alerts: {len(answered)}/{n} answered ({statuses}); failed: {failed}; "
          f"latency of the answered: {timing}; runs queued: {len(service.calls)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--burst", type=int, default=200, help="alerts posted at once (0: skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.runs > 0:
        first_call(args.runs)
    if args.burst > 0:
        burst(args.burst)


if __name__ == "__main__":
    main()
