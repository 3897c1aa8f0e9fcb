"""The TLS server of deploy/nginx (templates/firecrest-ci-tls.conf.template, what compose.yaml
publishes) run by sandbox/front.py under Debian's nginx with a throwaway self-signed certificate:
`nginx -t` accepts it, HTTPS reaches the upstream with X-Forwarded-Proto https, a key that is not
the certificate's or a missing certificate fails `nginx -t`, and several web replicas render as one
upstream `server` line each."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.front import TLS_TEMPLATE, Front, fill_template, render, render_tls


def self_signed(directory: Path, name: str = "cert") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, PEM files in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "firecrest-ci test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        return


@pytest.fixture(scope="module")
def upstream() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_nginx_t_accepts_the_tls_configuration(certificate):
    front = Front("127.0.0.1:9", tls=certificate)
    try:
        report = front.check()
        rendered = front.site.with_name("firecrest-ci-tls.conf").read_text()
    finally:
        front.stop()
    assert "test is successful" in report
    assert f"listen 127.0.0.1:{front.tls_port} ssl;" in rendered
    assert f"ssl_certificate     {certificate[0]};" in rendered
    assert "include snippets/firecrest-ci.conf;" in rendered


def test_https_reaches_the_upstream_as_https(upstream, certificate):
    host, port = upstream.server_address[:2]
    with Front(f"{host}:{port}", tls=certificate) as front:
        context = ssl.create_default_context(cafile=str(certificate[0]))
        with httpx.Client(verify=context, timeout=10) as client:
            answer = client.post(f"{front.tls_url}/webhooks/github", content=b"{}")
        assert answer.status_code == 202
        assert answer.extensions["http_version"] == b"HTTP/1.1"
        assert upstream.seen[-1]["x-forwarded-proto"] == "https"
        assert "server" not in answer.headers or answer.headers["server"] == "nginx"  # no version shown
        # A client that does not trust the certificate is refused by its own TLS stack.
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as client:
            client.post(f"{front.tls_url}/webhooks/github", content=b"{}")
        # The plain server (the container's health check) still answers.
        assert httpx.post(f"{front.url}/webhooks/github", content=b"{}", timeout=10).status_code == 202
        assert upstream.seen[-1]["x-forwarded-proto"] == "http"
        # The public side does not serve the metrics, and never asks the upstream for them.
        seen = len(upstream.seen)
        with httpx.Client(verify=context, timeout=10) as client:
            assert client.post(f"{front.tls_url}/metrics", content=b"").status_code == 404
        assert len(upstream.seen) == seen


def test_a_key_that_is_not_the_certificates_fails_nginx_t(tmp_path, certificate):
    _, other_key = self_signed(tmp_path, "other")
    front = Front("127.0.0.1:9", tls=(certificate[0], other_key))
    try:
        with pytest.raises(RuntimeError, match="nginx -t failed"):
            front.check()
    finally:
        front.stop()


def test_a_missing_certificate_fails_nginx_t(tmp_path, certificate):
    front = Front("127.0.0.1:9", tls=(tmp_path / "absent.pem", certificate[1]))
    try:
        with pytest.raises(RuntimeError, match=r"absent\.pem"):
            front.check()
    finally:
        front.stop()


def test_an_unfilled_placeholder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="FIRECREST_CI_TLS_CERTIFICATE_KEY"):
        fill_template(TLS_TEMPLATE, {"FIRECREST_CI_TLS_LISTEN": "443", "FIRECREST_CI_TLS_CERTIFICATE": "x"})


def test_web_replicas_render_as_one_upstream_server_each():
    rendered = render(["127.0.0.1:8080", "127.0.0.1:8082"], "80")
    assert re.findall(r"^\s*server (\S+);", rendered, flags=re.M) == ["127.0.0.1:8080", "127.0.0.1:8082"]
    assert render("web:8080", "80").count("server web:8080;") == 1


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (Debian: gettext-base) is missing")
def test_envsubst_renders_the_tls_template_as_the_tests_do():
    """What the official image's template step makes of it is what the tests run."""
    values = {
        "FIRECREST_CI_TLS_LISTEN": "443",
        "FIRECREST_CI_TLS_CERTIFICATE": "/run/secrets/tls_certificate",
        "FIRECREST_CI_TLS_CERTIFICATE_KEY": "/run/secrets/tls_certificate_key",
    }
    rendered = subprocess.run(
        ["envsubst", " ".join(f"${name}" for name in values)],
        input=TLS_TEMPLATE.read_text(),
        env=values,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered == render_tls(
        "443", Path(values["FIRECREST_CI_TLS_CERTIFICATE"]), Path(values["FIRECREST_CI_TLS_CERTIFICATE_KEY"])
    )
