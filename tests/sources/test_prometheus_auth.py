"""Reaching a protected Prometheus: basic auth and TLS with a private CA on the real server, bearer tokens and
extra headers on a recording one; the secrets never show in logs, reprs or errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scaler.errors import PermanentError
from scaler.sources.prometheus import PrometheusConfig, PrometheusSource
from tests.sources.fakes import recording_server, vector
from tests.support.prometheus import RunningPrometheus, prometheus

NOW = 1_700_006_400.0
# any instant works: vector(1) needs no data
WEB = 'label_replace(vector(1), "service", "web", "", "")'

USER = "scaler"
PASSWORD = "correct-horse-battery"
# bcrypt of PASSWORD at cost 4 (the lowest; the hash is checked on every request)
PASSWORD_HASH = "$2b$04$llnYyRdZeB3hukMAIqxv.ey5zlUS/OV/3Ew3ptduV3CVx8rQenaH2"
TOKEN = "tok-7f3a9c1e5b2d8f40"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    """Prometheus that wants basic auth on every endpoint."""
    web = {"basic_auth_users": {USER: PASSWORD_HASH}}
    with prometheus(tmp_path_factory.mktemp("guarded"), web_config=web, basic_auth=(USER, PASSWORD)) as running:
        yield running


def test_basic_auth_with_the_password_from_a_file(guarded: RunningPrometheus, tmp_path: Path) -> None:
    (tmp_path / "prometheus-password").write_text(PASSWORD + "\n")
    cfg = PrometheusConfig(
        url=guarded.url, basic_auth={"username": USER, "password_file": "prometheus-password"}
    )
    source = PrometheusSource(cfg, base_dir=tmp_path)
    assert source.query(WEB, by="service", now=NOW) == {"web": 1.0}


@pytest.mark.parametrize(
    "basic_auth",
    [{"username": USER, "password_env": "PROM_PASSWORD"}, None],
    ids=["wrong-password", "no-credentials"],
)
def test_a_refused_login_is_permanent_and_keeps_the_password_out(
    guarded: RunningPrometheus,
    basic_auth: dict | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-" + PASSWORD
    monkeypatch.setenv("PROM_PASSWORD", wrong)
    caplog.set_level(logging.DEBUG)
    source = PrometheusSource(PrometheusConfig(url=guarded.url, basic_auth=basic_auth))
    with pytest.raises(PermanentError) as err:
        source.query(WEB, by="service", now=NOW)
    assert err.value.code == "401"
    for shown in (str(err.value), repr(err.value), repr(source), caplog.text):
        assert wrong not in shown


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a server certificate for 127.0.0.1 signed by it, valid for a day around now."""
    out = tmp_path_factory.mktemp("pki")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("scaler test CA"))
        .issuer_name(_name("scaler test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        # clients match the IP against the SAN, never the common name
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(out / "ca.pem", out / "server.pem", out / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[RunningPrometheus]:
    """Prometheus serving https with a certificate from the private CA."""
    web = {"tls_server_config": {"cert_file": str(pki.cert), "key_file": str(pki.key)}}
    with prometheus(tmp_path_factory.mktemp("tls"), web_config=web, ca_file=pki.ca) as running:
        yield running


def test_https_with_the_private_ca_works(tls: RunningPrometheus, pki: Pki) -> None:
    assert tls.url.startswith("https://127.0.0.1:")
    # relative ca_file: next to the config file
    source = PrometheusSource(PrometheusConfig(url=tls.url, ca_file=pki.ca.name), base_dir=pki.ca.parent)
    assert source.query(WEB, by="service", now=NOW) == {"web": 1.0}


def test_https_without_the_ca_is_a_permanent_tls_error(tls: RunningPrometheus) -> None:
    source = PrometheusSource(PrometheusConfig(url=tls.url))  # the system CAs do not know the private one
    with pytest.raises(PermanentError) as err:
        source.query(WEB, by="service", now=NOW)
    assert err.value.code == "tls"
    assert "certificate verify failed" in str(err.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_accepts_any_certificate(tls: RunningPrometheus) -> None:
    source = PrometheusSource(PrometheusConfig(url=tls.url, insecure_skip_verify=True))
    assert source.query(WEB, by="service", now=NOW) == {"web": 1.0}


@pytest.mark.parametrize("where", ["env", "file"])
def test_bearer_token_and_extra_headers_go_with_the_query(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    (tmp_path / "token").write_text(TOKEN + "\n")
    auth = {"bearer_token_env": "PROM_TOKEN"} if where == "env" else {"bearer_token_file": "token"}
    answer = vector(({"service": "web"}, "0.25"), ({"service": "api"}, "NaN"))
    with recording_server(200, answer) as (url, seen):
        cfg = PrometheusConfig(url=url, headers={"X-Scope-OrgID": "team-a"}, **auth)
        source = PrometheusSource(cfg, base_dir=tmp_path)
        assert source.query("avg by (service) (x)", by="service", now=NOW) == {"web": 0.25}
    (request,) = seen
    assert request.path == "/api/v1/query"
    assert request.params == {"query": "avg by (service) (x)", "time": "1700006400.000"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Scope-OrgID"] == "team-a"
    assert TOKEN not in caplog.text and TOKEN not in repr(source)


def test_a_token_echoed_back_by_the_server_is_blanked_in_the_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    with recording_server(403, b"forbidden", content_type="text/plain", echo_authorization=True) as (url, _):
        source = PrometheusSource(PrometheusConfig(url=url, bearer_token_env="PROM_TOKEN"))
        with pytest.raises(PermanentError) as err:
            source.query("up", by="job", now=NOW)
    assert err.value.code == "403"
    assert "Authorization: Bearer <redacted>" in str(err.value)
    for shown in (str(err.value), repr(err.value), caplog.text):
        assert TOKEN not in shown
