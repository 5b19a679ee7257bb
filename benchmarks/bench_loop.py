"""Live-loop figures against a real Prometheus: queries and decision time per tick for 1,000 targets x 4
metrics, and the delay from a load change in Prometheus to the write on a real (moto-server) Auto Scaling group.

    python benchmarks/bench_loop.py            # needs Debian's prometheus; starts everything on 127.0.0.1

Targets: at most 4 PromQL queries per tick and <= 50 ms of decision compute for 1,000 x 4; a load change
reaches the target within one interval plus the query time (plus Prometheus's own scrape interval).
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Gauge, start_http_server  # noqa: E402

from scaler.live import loop as loop_module  # noqa: E402
from scaler.live.config import load_run_config  # noqa: E402
from scaler.live.controller import build  # noqa: E402
from tests.support.live import LivePrometheus, wait_until  # noqa: E402
from tests.support.moto_server import moto_server  # noqa: E402
from tests.support.prometheus import free_port  # noqa: E402

METRICS = ("cpu", "memory", "latency", "errors")


def policy(interval: str, targets: int) -> dict:
    kinds = {"cpu": ("utilization", 70), "memory": ("utilization", 80), "latency": ("latency", 0.5),
             "errors": ("error_rate", 0.01)}
    return {
        "name": "fleet", "replicas": {"min": 1, "max": 50}, "interval": interval,
        "metrics": [{"name": m, "kind": kinds[m][0], "target": kinds[m][1],
                     "query": f'max by (service) (bench_{m}{{service=~".+"}})',
                     "window": {"type": "ewma", "length": "60s"} if m in ("cpu", "memory") else {"type": "last"}}
                    for m in METRICS],
        "behavior": {"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 10, "period": 1}]},
                     "scale_down": {"stabilization": 0, "policies": [{"type": "percent", "value": 100,
                                                                      "period": 1}]}},
    }


def decision_figures(tmp: Path, n: int = 1000, ticks: int = 20) -> None:
    reg = CollectorRegistry()
    gauges = {m: Gauge(f"bench_{m}", m, ["service"], registry=reg) for m in METRICS}
    rng = np.random.default_rng(1)
    for i in range(n):
        for m, g in gauges.items():
            g.labels(service=f"svc{i}").set(float(rng.uniform(40, 90) if m in ("cpu", "memory") else 0.2))
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=reg)
    prom = LivePrometheus(tmp / "prom", [f"127.0.0.1:{port}"]).start()
    try:
        prom.wait_for(f'count(bench_errors) == {n}', timeout=60)
        (tmp / "fleet.yaml").write_text(yaml.safe_dump(policy("15s", n)))
        cfg = {"prometheus": {"url": prom.url}, "state": {"kind": "sqlite", "path": "state.db"}, "audit": None,
               "policies": [{"policy": "fleet.yaml", "target_label": "service",
                             "targets": [{"label": f"svc{i}", "kind": "dry-run", "name": f"svc{i}", "replicas": 5}
                                         for i in range(n)]}]}
        (tmp / "fleet-run.yaml").write_text(yaml.safe_dump(cfg))
        c = build(load_run_config(tmp / "fleet-run.yaml"), serve_http=False)
        gc.freeze()  # as `scaler run` does after start-up
        try:
            g = c.loop.groups[0]
            decide_ms, tick_ms = [], []
            before = c.loop.source.queries

            def timed(*args, **kw):  # the loop's own decide(), timed where the loop calls it
                t0 = time.perf_counter()
                try:
                    return real_decide(*args, **kw)
                finally:
                    decide_ms.append((time.perf_counter() - t0) * 1000)

            real_decide, loop_module.decide = loop_module.decide, timed
            for _ in range(ticks):
                t0 = time.perf_counter()
                report = c.loop.tick(g)
                tick_ms.append((time.perf_counter() - t0) * 1000)
                assert not report.query_errors, report.query_errors
            queries = (c.loop.source.queries - before) / ticks
            missing = int(np.isnan(report.decision.observed).sum())
            print(f"targets={n} metrics={len(METRICS)} queries/tick={queries:g} (target <= 4) "
                  f"decide median {statistics.median(decide_ms):.1f} ms max {max(decide_ms):.1f} ms (target <= 50 ms) "
                  f"whole tick median {statistics.median(tick_ms):.0f} ms (queries, dry-run targets, state save, "
                  f"{missing} values missing)")
        finally:
            c.close()
    finally:
        prom.kill()
        server.shutdown()


def reaction_figures(tmp: Path, trials: int = 5, interval: float = 5.0) -> None:
    reg = CollectorRegistry()
    cpu = Gauge("bench_cpu", "cpu", ["service"], registry=reg)
    cpu.labels(service="web").set(50)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=reg)
    prom = LivePrometheus(tmp / "prom2", [f"127.0.0.1:{port}"]).start()
    try:
        prom.wait_for('bench_cpu{service="web"}')
        with moto_server() as moto:
            ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.url)
            asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=moto.url)
            lt = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12345678"})
            asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=20, DesiredCapacity=2,
                                          AvailabilityZones=["us-east-1a"], LaunchTemplate={
                                              "LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]})
            pol = {"name": "web", "replicas": {"min": 1, "max": 20}, "interval": f"{interval}s",
                   "metrics": [{"name": "cpu", "query": "max by (service) (bench_cpu)", "target": 50,
                                "scale_up_above": 60, "scale_down_below": 40, "window": {"type": "last"}}],
                   "behavior": {"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 20,
                                                                               "period": 1}]},
                                "scale_down": {"stabilization": 0, "policies": [{"type": "percent", "value": 100,
                                                                                 "period": 1}]}}}
            (tmp / "web.yaml").write_text(yaml.safe_dump(pol))
            cfg = {"prometheus": {"url": prom.url}, "state": {"kind": "sqlite", "path": "state2.db"}, "audit": None,
                   "aws": {"endpoint_url": moto.url},
                   "policies": [{"policy": "web.yaml", "target_label": "service",
                                 "targets": [{"label": "web", "kind": "aws-asg", "name": "web"}]}]}
            (tmp / "web-run.yaml").write_text(yaml.safe_dump(cfg))
            c = build(load_run_config(tmp / "web-run.yaml"), serve_http=False)
            stop = threading.Event()
            thread = threading.Thread(target=c.loop.run, args=(stop,), daemon=True)
            thread.start()

            def desired() -> int:
                return asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
                    "AutoScalingGroups"][0]["DesiredCapacity"]

            delays = []
            try:
                rng = np.random.default_rng(2)
                for _ in range(trials):
                    wait_until(lambda: desired() == 2, timeout=60)
                    time.sleep(float(rng.uniform(0, interval)))  # change the load at a random point of a tick
                    t0 = time.monotonic()
                    cpu.labels(service="web").set(100)  # 100 % on 2 against 50 -> 4
                    wait_until(lambda: desired() == 4, timeout=60, every=0.02)
                    delays.append(time.monotonic() - t0)
                    cpu.labels(service="web").set(50)
                    wait_until(lambda: prom.query('bench_cpu{service="web"} == 50'), timeout=30)
                    asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=2)  # 50 % on 2: hold
            finally:
                stop.set()
                thread.join(30)
                c.close()
            print(f"load change -> ASG write: median {statistics.median(delays):.2f} s, max {max(delays):.2f} s "
                  f"over {trials} changes (interval {interval:g} s, scrape 1 s; bound: interval + scrape + query)")
    finally:
        prom.kill()
        server.shutdown()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        decision_figures(Path(d))
        reaction_figures(Path(d))
