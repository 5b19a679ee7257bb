"""Webhook received -> first provider call: median and max over a few runs of the real region-failover.

Everything runs in this process: a moto server with the failover world, the runbook service, the dispatcher
and the HTTP server. The clock starts just before the alert payload is sent (so it includes the client's own
send) and stops when botocore sends the run's first request (the precondition's Route 53 read).
Target: <= 200 ms.

    python benchmarks/bench_webhook.py [--runs 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.endpoint
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the failover world and local web server come from the test helpers

from scaler.alerts.dispatch import Dispatcher  # noqa: E402
from scaler.alerts.rules import Rule  # noqa: E402
from scaler.aws import AwsSettings  # noqa: E402
from scaler.runbook.service import RunbookService  # noqa: E402
from scaler.server.http import Server, Webhook  # noqa: E402
from scaler.server.serve import warm_clients  # noqa: E402
from tests.runbook.helpers import PRIMARY, build_world, failover_params, web_server  # noqa: E402
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


def _payload(starts: datetime) -> bytes:
    alert = {"status": "firing", "labels": {"alertname": "RegionDown", "region": PRIMARY},
             "annotations": {"summary": "bench"}, "startsAt": starts.isoformat(),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "bench0000000001"}
    return json.dumps({"version": "4", "receiver": "scaler", "status": "firing", "alerts": [alert],
                       "groupLabels": {}, "commonLabels": alert["labels"], "commonAnnotations": {},
                       "externalURL": "", "groupKey": "{}", "truncatedAlerts": 0}).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
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
            for i in range(args.runs):
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
        runs = [r.status for r in service.status()]
    print(f"webhook -> first provider call: median {statistics.median(latencies):.1f} ms, "
          f"max {max(latencies):.1f} ms over {len(latencies)} runs (target <= 200 ms; runs: "
          f"{', '.join(sorted(set(runs)))})")


if __name__ == "__main__":
    main()
