"""A real registry (Debian's docker-registry) serving TLS from a CA made for the test.

As an internal registry does: its certificate is signed by a private CA the system store does
not know, so a client trusts it only through ``CERTS_DIR/HOST:PORT/ca.crt``. With ``mutual``,
it also asks for a client certificate signed by that CA (``http.tls.clientcas``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import lab as lab_module


@dataclass
class Issued:
    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class LabCA:
    """A CA that signs a server certificate for 127.0.0.1 and client certificates."""

    def __init__(self) -> None:
        self._key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirror-bot test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._name = name
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, server: bool) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(common_name))]),
                critical=False,
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@contextmanager
def tls_registry(root: Path, ca: LabCA, *, mutual: bool = False) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a registry serving TLS with a certificate from ``ca``."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is missing: run `bash scripts/dev.sh setup`"
    root.mkdir(parents=True, exist_ok=True)
    server = ca.issue("127.0.0.1", server=True)
    (root / "server.crt").write_bytes(server.cert)
    (root / "server.key").write_bytes(server.key)
    (root / "ca.crt").write_bytes(ca.pem)
    port = lab_module.free_port()
    clientcas = f"    clientcas:\n      - {json.dumps(str(root / 'ca.crt'))}\n" if mutual else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(root / 'data'))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: tls-test\n  tls:\n"
        f"    certificate: {json.dumps(str(root / 'server.crt'))}\n"
        f"    key: {json.dumps(str(root / 'server.key'))}\n" + clientcas
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (root / "registry.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the TLS registry did not start listening"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def trust(certs_dir: Path, address: str, ca: LabCA, client: Issued | None = None) -> None:
    """Put ``ca`` (and a client certificate) where the docker client would look."""
    folder = certs_dir / address
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca.pem)
    if client is not None:
        (folder / "client.cert").write_bytes(client.cert)
        (folder / "client.key").write_bytes(client.key)
