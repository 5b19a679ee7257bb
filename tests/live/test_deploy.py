"""The shipped deployment files: the example and in-cluster configs load, manifests are sound, the image is
non-root with a health check."""

from __future__ import annotations

from pathlib import Path

import yaml

from scaler.live.config import load_run_config
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
URLS = {"SCALER_SLACK_ONCALL": "https://hooks.example.com/oncall", "SCALER_SLACK_TEAM": "https://hooks.example.com/t",
        "SCALER_SMTP_PASSWORD": "smtp-password"}


def test_the_example_run_config_loads(monkeypatch):
    for k, v in URLS.items():
        monkeypatch.setenv(k, v)
    loaded = load_run_config(ROOT / "examples" / "run.yaml")
    kinds = [t.config.kind for t in loaded.policies[0].targets]
    assert kinds == ["aws-asg", "aws-ecs", "kubernetes", "dry-run"]
    # the plans' routing: Alertmanager pages, chat and email for warning and critical alike
    assert [(type(c).__name__, c.name, sorted(c.severities)) for c in loaded.channels] == [
        ("AlertmanagerChannel", "alertmanager", ["critical", "warning"]),
        ("SlackChannel", "team", ["critical", "warning"]),
        ("EmailChannel", "team-mail", ["critical", "warning"]),
    ]
    assert [r.name for r in loaded.config.health_rules] == ["latency-critical", "errors-critical",
                                                            "errors-rollback", "latency-rollback", "health-check"]


def test_the_configmap_holds_a_config_that_loads(tmp_path: Path, monkeypatch):
    for k, v in URLS.items():
        monkeypatch.setenv(k, v)
    (cm,) = yaml.safe_load_all((DEPLOY / "configmap.yaml").read_text())
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    loaded = load_run_config(tmp_path / "scaler.yaml")
    assert loaded.lease.kind == "dynamodb" and loaded.state.kind == "dynamodb"
    assert {t.config.kind for t in loaded.policies[0].targets} == {"kubernetes"}


def test_manifests_probe_the_endpoints_and_run_unprivileged():
    docs = [d for f in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"scaler", "web"}
    for d in deployments:
        (c,) = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "scaler"]
        assert c["args"] == ["run", "/etc/scaler/scaler.yaml"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        sc = {**d["spec"]["template"]["spec"].get("securityContext", {}), **c.get("securityContext", {})}
        assert sc["runAsNonRoot"] and sc["allowPrivilegeEscalation"] is False
    (controller,) = [d for d in deployments if d["metadata"]["name"] == "scaler"]
    assert controller["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "scaler"]
    verbs = {(res, v) for rule in role["rules"] for res in rule["resources"] for v in rule["verbs"]}
    assert ("deployments/scale", "patch") in verbs and ("deployments", "update") not in verbs


def test_the_image_runs_the_controller_as_a_non_root_user_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert "USER scaler" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/healthz" in text
    assert 'CMD ["run", "/etc/scaler/scaler.yaml"]' in lines


def test_the_cluster_role_allows_every_request_the_kubernetes_target_makes(tmp_path: Path):
    from scaler.targets.base import KubeSettings, TargetContext
    from scaler.targets.kubernetes import KubernetesConfig
    from tests.support.fake_kube import fake_kube

    with fake_kube(tmp_path / "kube") as kube:
        kube.add("deployment", "web", namespace="shop", replicas=3)
        kube.add("statefulset", "db", namespace="shop", replicas=2)
        ctx = TargetContext(kube=KubeSettings(kubeconfig=kube.kubeconfig, in_cluster=False, timeout=2.0))
        for resource, name in (("deployment", "web"), ("statefulset", "db")):
            target = KubernetesConfig(name=name, namespace="shop", resource=resource).build(ctx)
            target.read()
            target.write(4)
        seen = list(kube.requests)
    docs = [d for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text())]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "scaler"]
    allowed = {(res, v) for rule in role["rules"] for res in rule["resources"] for v in rule["verbs"]}
    verb = {"GET": "get", "PATCH": "patch", "PUT": "update"}
    used = set()
    for r in seen:  # /apis/apps/v1/namespaces/shop/deployments/web[/scale]
        parts = r.path.strip("/").split("/")
        used.add((parts[5] + ("/scale" if parts[-1] == "scale" else ""), verb[r.method]))
    assert {("deployments/scale", "patch"), ("statefulsets", "get")} <= used
    assert used <= allowed, used - allowed
