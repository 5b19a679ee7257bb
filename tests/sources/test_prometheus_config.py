"""PrometheusConfig validation, secrets read when the source is built, and the flat source registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scaler import secrets
from scaler.errors import ConfigError
from scaler.registry import parse
from scaler.sources.base import SourceConfig, SourceContext
from scaler.sources.prometheus import BasicAuth, PrometheusConfig, PrometheusSource
from scaler.sources.registry import SOURCES

URL = "http://prometheus:9090"


def test_defaults_and_durations() -> None:
    cfg = PrometheusConfig(url="http://prometheus:9090/")
    assert cfg.url == URL  # no trailing slash: the client appends /api/v1/query
    assert (cfg.timeout, cfg.stale_after) == (5.0, 120.0)
    assert not cfg.insecure_skip_verify and cfg.headers == {}
    cfg = PrometheusConfig(url=URL, timeout="300ms", stale_after="2m")
    assert (cfg.timeout, cfg.stale_after) == (0.3, 120.0)


def test_a_path_prefix_is_kept_for_mimir_and_cortex() -> None:
    cfg = PrometheusConfig(url="https://mimir.example/prometheus/", headers={"X-Scope-OrgID": "team-a"})
    assert cfg.url == "https://mimir.example/prometheus"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"url": "prometheus:9090"}, "expected an http:// or https:// URL"),
        ({"url": "http://alice:pw@prometheus:9090"}, "not in the URL"),
        ({"url": "http://prometheus:9090/?x=1"}, "query string"),
        ({"url": URL, "timeout": 0}, "greater than 0"),
        ({"url": URL, "timeout": "5 parsecs"}, "cannot read '5 parsecs' as a duration"),
        ({"url": URL, "stale_after": "-1s"}, "cannot read"),
        ({"url": URL, "bearer_token_env": "T", "bearer_token_file": "t"}, "at most one of"),
        ({"url": URL, "bearer_token_env": "T", "basic_auth": {"username": "u", "password_env": "P"}},
         "at most one of"),
        ({"url": URL, "basic_auth": {"username": "u"}}, "exactly one of password_env or password_file"),
        ({"url": URL, "basic_auth": {"username": "u", "password_env": "P", "password_file": "p"}},
         "exactly one of password_env or password_file"),
        ({"url": URL, "bearer_token_env": "not a name"}, "should match pattern"),
        ({"url": URL, "headers": {"authorization": "Bearer x"}}, "secrets stay out of the config file"),
        ({"url": URL, "ca_file": "ca.pem"}, "only apply to an https:// URL"),
        ({"url": "https://p", "ca_file": "ca.pem", "insecure_skip_verify": True}, "contradict"),
        ({"url": URL, "token": "x"}, "Extra inputs are not permitted"),
    ],
    ids=[
        "no-scheme",
        "credentials-in-url",
        "query-in-url",
        "zero-timeout",
        "unreadable-duration",
        "negative-duration",
        "two-bearer-sources",
        "bearer-and-basic",
        "basic-without-password",
        "basic-with-two-passwords",
        "env-name-with-spaces",
        "authorization-header",
        "ca-file-over-http",
        "ca-file-and-insecure",
        "unknown-field",
    ],
)
def test_invalid_configs_are_refused(fields: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        PrometheusConfig.model_validate(fields)


def test_the_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        PrometheusConfig(url=URL).timeout = 1  # type: ignore[misc]


def test_secrets_are_read_when_built_and_relative_files_resolve_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc-token\n")
    source = PrometheusSource(PrometheusConfig(url=URL, bearer_token_file="token"), base_dir=tmp_path)
    assert repr(source) == "PrometheusSource(url='http://prometheus:9090', auth=bearer)"


def test_a_missing_env_var_is_a_config_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROM_TOKEN", raising=False)
    with pytest.raises(ConfigError) as err:
        PrometheusSource(PrometheusConfig(url=URL, bearer_token_env="PROM_TOKEN"))
    (problem,) = err.value.problems
    assert problem.where == "prometheus.bearer_token_env"
    assert problem.what == "environment variable PROM_TOKEN is not set"


def test_an_empty_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", " \n")
    with pytest.raises(ConfigError, match=r"prometheus\.bearer_token_env: environment variable PROM_TOKEN is empty"):
        PrometheusSource(PrometheusConfig(url=URL, bearer_token_env="PROM_TOKEN"))


PASSWORD = "pässwörd-7f3a"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (PASSWORD.encode("latin-1"), "is not UTF-8 text"),
        (PASSWORD.encode() * (secrets.MAX_BYTES // 10), f"is larger than {secrets.MAX_BYTES} bytes"),
        (b"  \n", "is empty"),
    ],
    ids=["not-utf-8", "oversized", "empty"],
)
def test_a_password_file_that_cannot_serve_is_named_without_its_bytes(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / "password").write_bytes(content)
    cfg = PrometheusConfig(url=URL, basic_auth={"username": "scaler", "password_file": "password"})

    with pytest.raises(ConfigError) as err:
        PrometheusSource(cfg, base_dir=tmp_path)

    (problem,) = err.value.problems
    assert problem.where == "prometheus.basic_auth.password_file"
    assert problem.what == f"{tmp_path / 'password'} {says}"
    assert "pässw" not in str(err.value) and "p\\xe4ssw" not in str(err.value)


def test_a_missing_password_env_var_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROM_PASSWORD", raising=False)
    cfg = PrometheusConfig(url=URL, basic_auth={"username": "scaler", "password_env": "PROM_PASSWORD"})
    with pytest.raises(ConfigError) as err:
        PrometheusSource(cfg)
    assert [(p.where, p.what) for p in err.value.problems] == [
        ("prometheus.basic_auth.password_env", "environment variable PROM_PASSWORD is not set")
    ]


def test_every_unreadable_file_is_named_at_once(tmp_path: Path) -> None:
    cfg = PrometheusConfig(
        url="https://prometheus:9090",
        basic_auth={"username": "scaler", "password_file": "missing-password"},
        ca_file="missing-ca.pem",
    )
    with pytest.raises(ConfigError) as err:
        PrometheusSource(cfg, base_dir=tmp_path)
    assert [(p.where, p.what) for p in err.value.problems] == [
        ("prometheus.basic_auth.password_file", f"cannot read {tmp_path / 'missing-password'}: No such file or "
         "directory"),
        ("prometheus.ca_file", f"cannot read {tmp_path / 'missing-ca.pem'}"),
    ]


def test_the_registry_builds_a_prometheus_source_from_its_config_section(tmp_path: Path) -> None:
    assert SOURCES == {"prometheus": PrometheusConfig} and issubclass(PrometheusConfig, SourceConfig)
    # the section may leave out its kind: Prometheus is the default
    cfg = parse(SOURCES, {"url": URL, "timeout": "2s"}, source="run.yaml", default="prometheus")
    source = cfg.build(SourceContext(base_dir=tmp_path))
    assert isinstance(source, PrometheusSource)
    assert source.config.timeout == 2.0 and source.queries == 0


def test_every_field_of_the_source_config_is_described() -> None:
    for model in (PrometheusConfig, BasicAuth):
        assert [name for name, f in model.model_fields.items() if not f.description] == [], model.__name__
