"""What `scaler serve` runs: its config (listen, webhook token, runbooks, trigger rules), and the HTTP server
with trigger dispatch to the runbook service, started and stopped together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import Field, field_validator, model_validator

from scaler import secrets
from scaler.alerts.dispatch import Dispatcher, TriggerMetrics
from scaler.alerts.fit import check_rules_fit
from scaler.alerts.rules import Rule, check_rules
from scaler.aws import AwsSection
from scaler.errors import ConfigError, Problem, ScalerError
from scaler.runbook.service import RunbookService
from scaler.server.http import Limits, Server, Webhook
from scaler.units import PositiveSeconds, split_listen
from scaler.yamlio import Strict, load

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16  # a short shared secret is guessable; `openssl rand -hex 32` gives 64
# The AWS services runbook actions call. Only a warm-up list: a service missing here still works, its first
# call just pays for loading its model.
WARM_SERVICES = ("route53", "elbv2", "ssm", "autoscaling", "ecs", "secretsmanager")


class WebhookSection(Strict):
    """Where Alertmanager posts and where the bearer token comes from (never the config file itself)."""

    path: str = Field("/alertmanager", pattern=r"^/[A-Za-z0-9/_.-]*$", description="URL path of the webhook")
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                  description="Name of the environment variable holding the token")
    token_file: Path | None = Field(None, description="File holding the token (trailing newline ignored)")
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20, description="Largest accepted body, bytes")

    @field_validator("path")
    @classmethod
    def _own_path(cls, path: str) -> str:
        if path in ("/metrics", "/healthz", "/readyz"):
            raise ValueError(f"{path} is already served; pick another webhook path")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> WebhookSection:
        secrets.one_place(self, "token")
        return self


class LimitsSection(Strict):
    """What a burst of alerts or a misbehaving client may cost the server (scaler.server.http.Limits; the
    defaults are its). Bounded so a config cannot ask for an unbounded server."""

    max_connections: int = Field(512, ge=1, le=65_536, description="Connections open at once; past it, 503")
    backlog: int = Field(2048, ge=1, le=65_535, description="Connections the kernel queues before they are "
                         "accepted (Linux caps it at net.core.somaxconn)")
    header_timeout: PositiveSeconds = Field(5.0, le=300, description="A request's headers must arrive within "
                                            "this, seconds; else 408")
    body_timeout: PositiveSeconds = Field(10.0, le=300, description="The webhook body must arrive within this "
                                          "once the headers are in, seconds; else 408")
    keep_alive: PositiveSeconds = Field(5.0, le=300, description="An idle keep-alive connection is closed "
                                        "after this, seconds")
    dispatch_threads: int = Field(4, ge=1, le=64, description="Threads that parse, validate and dispatch "
                                  "webhook bodies")
    graceful_shutdown: PositiveSeconds = Field(5.0, le=300, description="On stop, requests in flight get this "
                                               "long to finish, seconds")

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class ServeConfig(Strict):
    """The `scaler serve` config. Relative paths are relative to the config file's directory."""

    listen: str = Field("127.0.0.1:9464", description="host:port to bind; port 0 picks a free port")
    webhook: WebhookSection
    runbooks_dir: Path = Field(Path("runbooks"), description="Directory of runbook YAML files")
    journal: Path = Field(description="Run journal file (makes a second start with the same key a no-op)")
    audit: Path = Field(description="Audit log file")
    aws: AwsSection = Field(default_factory=AwsSection)
    http_timeout: PositiveSeconds = Field(5.0, description="Timeout of runbook HTTP actions, seconds")
    workers: int = Field(4, ge=1, le=64, description="Runs that may start at the same time")
    triggers: list[Rule] = Field(default_factory=list, description="Alert-to-runbook rules, first match wins")
    limits: LimitsSection = Field(default_factory=LimitsSection, description="The server's limits (docs/serving.md)")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("triggers")
    @classmethod
    def _unique(cls, rules: list[Rule]) -> list[Rule]:
        return check_rules(rules)


def _resolve(cfg: ServeConfig, base: Path) -> ServeConfig:
    def at(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    hook = cfg.webhook
    if hook.token_file is not None:
        hook = hook.model_copy(update={"token_file": at(hook.token_file)})
    return cfg.model_copy(update={"runbooks_dir": at(cfg.runbooks_dir), "journal": at(cfg.journal),
                                  "audit": at(cfg.audit), "webhook": hook})


def _token(cfg: ServeConfig, source: Path) -> str:
    hook = cfg.webhook
    where = "webhook.token_env" if hook.token_env is not None else "webhook.token_file"
    try:
        value = secrets.read(env=hook.token_env, file=hook.token_file)
    except secrets.SecretUnavailable as e:
        raise ConfigError(source, [Problem(where, str(e))]) from None
    # Say how long it was, never what it was.
    if len(value) < MIN_TOKEN_CHARS:
        problem = Problem(where, f"token has {len(value)} characters, need >= {MIN_TOKEN_CHARS}")
        raise ConfigError(source, [problem])
    return value


def load_serve_config(path: Path) -> tuple[ServeConfig, str]:
    """The validated config with paths resolved, and the token; ConfigError naming file and field."""
    cfg = _resolve(load(ServeConfig, path), path.resolve().parent)
    token = _token(cfg, path)
    if not cfg.runbooks_dir.is_dir():
        raise ConfigError(path, [Problem("runbooks_dir", f"{cfg.runbooks_dir} is not a directory")])
    return cfg, token


def warm_clients(service: RunbookService, region: str) -> None:
    """Build the AWS clients before the first alert needs them.

    Creating the first botocore client loads and parses its service model: ~300 ms, measured by
    benchmarks/bench_webhook.py, against a 200 ms budget from webhook to first provider call. Clients in
    other regions reuse the loaded model, so one region is enough. No request is sent.
    """
    for name in WARM_SERVICES:
        try:
            service.clients.client(name, region)
        except Exception as e:  # a warm-up failure only costs latency later; the run will report the cause
            log.warning("preparing the %s client failed: %s", name, e)


@dataclass
class Serving:
    server: Server
    dispatcher: Dispatcher
    service: RunbookService


@contextmanager
def serving(cfg: ServeConfig, token: str, *, source: str | Path = "serve config",
            registry: CollectorRegistry | None = None, listen: str | None = None) -> Iterator[Serving]:
    """Build the runbook service, dispatcher and server; stop all three on exit, runs in flight first."""
    registry = registry or CollectorRegistry()
    aws = cfg.aws.settings()
    service = RunbookService(runbooks_dir=cfg.runbooks_dir, journal_path=cfg.journal, audit_path=cfg.audit,
                             aws=aws, http_timeout=cfg.http_timeout)
    check_rules_fit(list(cfg.triggers), service, source)
    dispatcher = Dispatcher(service=service, rules=list(cfg.triggers), metrics=TriggerMetrics(registry),
                            workers=cfg.workers)
    closing, warm = threading.Event(), threading.Event()

    def warm_up() -> None:
        warm_clients(service, cfg.aws.region)
        warm.set()

    threading.Thread(target=warm_up, name="scaler-warm", daemon=True).start()

    def ready() -> tuple[bool, str]:
        if closing.is_set():
            return False, "shutting down"
        if not warm.is_set():
            return False, "preparing AWS clients"
        if not cfg.runbooks_dir.is_dir():
            return False, f"runbooks directory {cfg.runbooks_dir} is missing"
        return True, "ok"

    host, port = split_listen(listen or cfg.listen)
    hook = Webhook(token=token, submit=dispatcher.submit, path=cfg.webhook.path,
                   max_body_bytes=cfg.webhook.max_body_bytes)
    try:
        server = Server(registry=registry, host=host, port=port, webhook=hook, ready=ready, limits=cfg.limits.limits())
    except OSError as e:
        dispatcher.close()
        raise ScalerError(f"cannot listen on {listen or cfg.listen}: {e.strerror or e}") from e
    try:
        server.start()
        yield Serving(server, dispatcher, service)
    finally:
        closing.set()
        server.stop()
        dispatcher.close()
