"""A token server for a registry behind ``auth: token`` (the distribution token spec).

It signs RS256 JWTs with a test key whose self-signed certificate the registry trusts
(``rootcertbundle``), carrying the certificate in the ``x5c`` header as docker-registry 2.8
expects. Anonymous clients get ``pull``; a known user gets what it asks for. Every token
request is logged, so tests can tell anonymous from authenticated traffic and count renewals.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.local_http import serve_locally

SERVICE = "lab-token-registry"
ISSUER = "lab-token-issuer"
REGISTRY_LEEWAY = 60
"""docker-registry accepts a token up to 60 s past its ``exp`` (clock skew leeway)."""


@dataclass(frozen=True)
class Issued:
    user: str | None
    scopes: tuple[str, ...]
    granted: tuple[str, ...]


@dataclass
class TokenServer:
    """Serve ``/token``; ``lifetime`` is how long a token really works at the registry and
    ``expires_in`` what we tell clients (by default the truth)."""

    cert_dir: Path
    users: dict[str, str] = field(default_factory=dict)
    lifetime: float = 300.0
    expires_in: float | None = None
    issued: list[Issued] = field(default_factory=list)
    realm: str = ""
    registry: str = ""
    """The address of the registry that trusts us, once a test has started it."""
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.cert_dir / "token-cert.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def registry_settings(self) -> dict[str, str]:
        """The ``auth: token`` section the registry needs to trust us."""
        return {
            "realm": self.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.cert_path),
        }

    async def start(self) -> TokenServer:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner, port = await serve_locally(app, handle_signals=False, shutdown_timeout=0.5)
        self.realm = f"http://127.0.0.1:{port}/token"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        expected = self.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password):
            raise web.HTTPUnauthorized(text='{"details":"wrong user or password"}')
        return user

    async def _token(self, request: web.Request) -> web.Response:
        user = self._user(request)
        scopes = tuple(request.query.getall("scope", []))
        access = []
        granted = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repository, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if a == "pull" or user is not None]
            if kind == "repository" and allowed:
                access.append({"type": kind, "name": repository, "actions": allowed})
                granted.append(f"{kind}:{repository}:{','.join(allowed)}")
        self.issued.append(Issued(user, scopes, tuple(granted)))
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": request.query.get("service", SERVICE),
            "iat": now,
            "nbf": now - 10,
            "exp": now + int(self.lifetime) - REGISTRY_LEEWAY,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [x5c]})
        expires_in = self.expires_in if self.expires_in is not None else self.lifetime
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": int(expires_in)}
        )
