"""A small async client of the OCI distribution API (aiohttp), for the ``registry`` engine.

It knows only what a copier needs: the ``WWW-Authenticate`` dance (Bearer tokens cached per
registry and scope, renewed before expiry and on a 401; Basic), where credentials come from
(settings, else ``~/.docker/config.json``), the manifest Accept list, plain HTTP for insecure
registries, and how to turn registry answers into typed errors the engine can explain in one
sentence. Bodies are never buffered here: blobs go through as streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from mirror.credentials import Credential, Credentials
from mirror.egress import EgressDenied, EgressGuard

log = logging.getLogger(__name__)

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX})
MANIFEST_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io"}
_TOKEN_MARGIN = 5.0  # renew a token this many seconds before it says it expires
_DEFAULT_TOKEN_LIFETIME = 60.0  # the distribution token spec's default ``expires_in``


# -- errors ------------------------------------------------------------------------------------


class RegistryError(Exception):
    """A registry said no, or could not be asked. ``transient`` ones are worth retrying."""

    transient = False

    def __init__(self, registry: str, detail: str = "") -> None:
        super().__init__(f"{registry}: {detail}" if detail else registry)
        self.registry = registry
        self.detail = detail


class NotFound(RegistryError):
    """The repository, manifest or blob does not exist (HTTP 404)."""


class AccessDenied(RegistryError):
    """Authentication failed or the token lacks the scope (HTTP 401/403 after auth)."""


class Unreachable(RegistryError):
    """No answer: refused, reset, DNS, TLS, or the connection dropped mid-transfer."""

    transient = True


class TimedOut(RegistryError):
    """The registry stopped answering within the timeout."""

    transient = True


class RateLimited(RegistryError):
    """HTTP 429; ``retry_after`` seconds from the ``Retry-After`` header when it had one."""

    transient = True

    def __init__(self, registry: str, retry_after: float | None) -> None:
        super().__init__(registry, "too many requests")
        self.retry_after = retry_after


class ServerError(RegistryError):
    """HTTP 5xx."""

    transient = True

    def __init__(self, registry: str, status: int) -> None:
        super().__init__(registry, f"HTTP {status}")
        self.status = status


class Forbidden(RegistryError):
    """We refused to connect: the destination is an internal address nobody allowed."""


class TokenRejected(RegistryError):
    """A 401 on a request whose streamed body cannot be replayed: redo the whole transfer."""

    transient = True


class DigestMismatch(RegistryError):
    """Content did not hash to the digest that names it."""


class Refused(RegistryError):
    """Any other 4xx: the registry understood and refused (invalid manifest, unsupported...)."""

    def __init__(self, registry: str, status: int, detail: str) -> None:
        super().__init__(registry, f"HTTP {status} {detail}".strip())
        self.status = status


# -- credentials -------------------------------------------------------------------------------


def canonical_host(host: str) -> str:
    """``index.docker.io`` and friends are Docker Hub, written ``docker.io`` in references."""
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def docker_config_credentials(path: Path | None = None) -> dict[str, Credential]:
    """The ``auths`` of ``~/.docker/config.json`` (or ``$DOCKER_CONFIG/config.json``).

    Only the inline ``auth`` (base64 ``user:password``) form: credential helpers run external
    programs, which a bot on a server does not need.
    """
    if path is None:
        folder = os.environ.get("DOCKER_CONFIG")
        path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    found: dict[str, Credential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict) or not isinstance(key, str):
            continue
        host = urlsplit(key if "://" in key else f"//{key}").netloc or key
        username, password = entry.get("username"), entry.get("password")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            with contextlib.suppress(ValueError):
                username, _, password = base64.b64decode(encoded).decode().partition(":")
        if isinstance(username, str) and isinstance(password, str) and username:
            found[canonical_host(host)] = Credential(username, password)
    return found


# -- the client --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry holds it: exact bytes, media type, digest."""

    data: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "bearer" or "basic"
    params: Mapping[str, str]


@dataclass
class _Token:
    value: str
    expires: float


def parse_challenge(header: str) -> _Challenge | None:
    """``Bearer realm="...",service="...",scope="..."`` -> scheme and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip().lower()
        j = eq + 1
        if j < len(rest) and rest[j] == '"':
            end = rest.find('"', j + 1)
            end = len(rest) if end < 0 else end
            value, i = rest[j + 1 : end], end + 1
        else:
            end = rest.find(",", j)
            end = len(rest) if end < 0 else end
            value, i = rest[j:end].strip(), end
        params[key] = value
        i = rest.find(",", i)
        i = len(rest) if i < 0 else i + 1
    return _Challenge(scheme.lower(), params)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    from email.utils import parsedate_to_datetime

    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _basic(cred: Credential) -> str:
    pair = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _raise_if_denied(host: str, exc: aiohttp.ClientError) -> None:
    """The guard's refusal from inside the resolver arrives wrapped as a connector error."""
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, EgressDenied):
        raise Forbidden(host, cause.host) from exc


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class RegistryClient:
    """One aiohttp session for every registry; auth state kept per registry and scope."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        docker_config: Path | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 120.0,
        guard: EgressGuard | None = None,
    ) -> None:
        self._guard = guard or EgressGuard(())
        self._explicit = {canonical_host(k): v for k, v in (credentials or {}).items()}
        self._docker_config = docker_config
        self._from_file: dict[str, Credential] | None = None
        self._insecure = {canonical_host(h) for h in insecure}
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self._challenges: dict[str, _Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- plumbing -------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=True,  # HTTPS_PROXY / NO_PROXY, as DESIGN.md asks
                auto_decompress=False,  # blobs are hashed as stored, never re-encoded
                connector=aiohttp.TCPConnector(limit=32, resolver=self._guard.resolver()),
                trace_configs=[self._guard.trace_config()],
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def base_url(self, registry: str) -> str:
        host = canonical_host(registry)
        api = DOCKER_HUB_API if host == DOCKER_HUB else host
        scheme = "http" if host in self._insecure else "https"
        return f"{scheme}://{api}"

    def credential(self, registry: str) -> Credential | None:
        host = canonical_host(registry)
        if host in self._explicit:
            return self._explicit[host]
        if self._from_file is None:
            self._from_file = docker_config_credentials(self._docker_config)
        return self._from_file.get(host)

    async def _authorization(self, registry: str, scope: str, *, force: bool) -> str | None:
        """The Authorization header for ``scope`` at ``registry``, from what it asked before."""
        host = canonical_host(registry)
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            cred = self.credential(host)
            if cred is None:
                return None
            return _basic(cred)
        if challenge.scheme != "bearer":
            return None
        key = (host, scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if force or token is None or token.expires <= time.monotonic():
                token = await self._fetch_token(host, challenge, scope)
                self._tokens[key] = token
        return f"Bearer {token.value}"

    async def _fetch_token(self, host: str, challenge: _Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise AccessDenied(host, "the registry asked for a token without saying where")
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.extend(("scope", part) for part in scope.split(" ") if part)
        cred = self.credential(host)
        headers = {"Authorization": _basic(cred)} if cred else {}
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        started = time.monotonic()
        try:
            registry_host = urlsplit(self.base_url(host)).hostname
            async with self._http().get(
                url, headers=headers, trace_request_ctx={"same_host_as": registry_host}
            ) as resp:
                if resp.status in (401, 403):
                    raise AccessDenied(host, "the token service refused the credentials")
                if resp.status == 429:
                    raise RateLimited(host, _retry_after(resp.headers.get("Retry-After")))
                if resp.status >= 500:
                    raise ServerError(host, resp.status)
                if resp.status != 200:
                    raise Refused(host, resp.status, "from the token service")
                body: Any = await resp.json(content_type=None)
        except EgressDenied as exc:
            raise Forbidden(host, f"token service at {exc.host}") from exc
        except aiohttp.ClientError as exc:
            _raise_if_denied(host, exc)
            raise Unreachable(host, f"token service: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise TimedOut(host, "token service") from exc
        except ValueError as exc:
            raise Refused(host, 200, "the token service answered something not JSON") from exc
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise AccessDenied(host, "the token service gave no token")
        try:
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = _DEFAULT_TOKEN_LIFETIME
        margin = min(_TOKEN_MARGIN, lifetime / 4)
        return _Token(value, started + lifetime - margin)

    def _learn(self, host: str, resp: aiohttp.ClientResponse) -> bool:
        """Remember the challenge of a 401; True when it tells us something to try."""
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is None or challenge.scheme not in ("bearer", "basic"):
            return False
        if challenge.scheme == "basic" and self.credential(host) is None:
            return False
        self._challenges[host] = challenge
        return True

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        registry: str,
        url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | AsyncIterable[bytes] | None = None,
        ok: Iterable[int] = (200,),
        allow_redirects: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send with auth (learning the challenge from a 401), yield the response if its status
        is in ``ok``, else raise the typed error. ``url`` may be a path below the registry."""
        host = canonical_host(registry)
        if url.startswith("/"):
            url = self.base_url(host) + url
        statuses = set(ok)
        replayable = not isinstance(data, AsyncIterable)
        refresh = False
        for attempt in range(3):
            auth = await self._authorization(host, scope, force=refresh)
            all_headers = dict(headers or {})
            if auth:
                all_headers["Authorization"] = auth
            try:
                resp = await self._http().request(
                    method, url, headers=all_headers, data=data, allow_redirects=allow_redirects
                )
            except EgressDenied as exc:
                raise Forbidden(host, exc.host) from exc
            except aiohttp.ClientError as exc:
                _raise_if_denied(host, exc)
                raise Unreachable(host, type(exc).__name__) from exc
            except TimeoutError as exc:
                raise TimedOut(host) from exc
            try:
                if resp.status == 401 and attempt < 2 and self._learn(host, resp):
                    if not replayable:
                        # The body is spent: forget the token and let the caller start over.
                        self._tokens.pop((host, scope), None)
                        raise TokenRejected(host, "authorization refused during an upload")
                    refresh = auth is not None  # a token we sent was refused: get a new one
                    continue
                if resp.status in statuses:
                    yield resp
                    return
                await _raise_for(host, resp, had_auth=auth is not None)
            finally:
                resp.release()
        raise AccessDenied(host, "authentication failed")  # pragma: no cover (loop exits above)

    # -- manifests ------------------------------------------------------------------------------

    async def get_manifest(
        self, registry: str, repository: str, reference: str, *, extra_types: Iterable[str] = ()
    ) -> Manifest:
        """The exact bytes; a digest reference is verified against them."""
        accept = ", ".join(dict.fromkeys([*MANIFEST_TYPES, *extra_types]))
        url = f"/v2/{repository}/manifests/{reference}"
        async with self.request(
            "GET", registry, url, scope=pull_scope(repository), headers={"Accept": accept}
        ) as resp:
            data = await resp.read()
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest")
        if not media_type or media_type in ("application/json", "text/plain"):
            with contextlib.suppress(ValueError, AttributeError):
                media_type = str(json.loads(data).get("mediaType") or media_type)
        digest = digest_of(data)
        expected = reference if reference.startswith("sha256:") else header_digest
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(registry, f"manifest {expected} arrived as {digest}")
        return Manifest(data, media_type, digest)

    async def head_manifest(self, registry: str, repository: str, reference: str) -> str | None:
        """The digest ``reference`` resolves to, or None when there is none."""
        url = f"/v2/{repository}/manifests/{reference}"
        try:
            async with self.request(
                "HEAD",
                registry,
                url,
                scope=pull_scope(repository),
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
            ) as resp:
                digest = resp.headers.get("Docker-Content-Digest")
        except NotFound:
            return None
        if digest:
            return digest
        return (await self.get_manifest(registry, repository, reference)).digest

    async def put_manifest(
        self, registry: str, repository: str, reference: str, manifest: Manifest
    ) -> str | None:
        """Push the exact bytes; the digest the registry says it stored, if it said."""
        async with self.request(
            "PUT",
            registry,
            f"/v2/{repository}/manifests/{reference}",
            scope=push_scope(repository),
            headers={"Content-Type": manifest.media_type},
            data=manifest.data,
            ok=(201, 200),
        ) as resp:
            return resp.headers.get("Docker-Content-Digest")

    # -- blobs ----------------------------------------------------------------------------------

    async def blob_exists(self, registry: str, repository: str, digest: str) -> bool:
        try:
            async with self.request(
                "HEAD",
                registry,
                f"/v2/{repository}/blobs/{digest}",
                scope=push_scope(repository),
            ):
                return True
        except NotFound:
            return False

    @contextlib.asynccontextmanager
    async def open_blob(
        self, registry: str, repository: str, digest: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The blob's response, to be read as a stream (redirects to a CDN are followed,
        without our Authorization header, which aiohttp drops across origins)."""
        async with self.request(
            "GET", registry, f"/v2/{repository}/blobs/{digest}", scope=pull_scope(repository)
        ) as resp:
            yield resp

    async def mount_blob(
        self, registry: str, repository: str, digest: str, from_repository: str
    ) -> str | None:
        """Cross-repository mount; None when mounted, else the upload URL the registry opened
        instead (it does that when it cannot mount, e.g. the token lacks pull on the source)."""
        query = urlencode({"mount": digest, "from": from_repository})
        scope = f"{push_scope(repository)} {pull_scope(from_repository)}"
        async with self.request(
            "POST",
            registry,
            f"/v2/{repository}/blobs/uploads/?{query}",
            scope=scope,
            ok=(201, 202),
        ) as resp:
            if resp.status == 201:
                return None
            return self._location(registry, resp)

    async def start_upload(self, registry: str, repository: str) -> str:
        async with self.request(
            "POST",
            registry,
            f"/v2/{repository}/blobs/uploads/",
            scope=push_scope(repository),
            ok=(202,),
        ) as resp:
            return self._location(registry, resp)

    async def upload_blob(
        self,
        registry: str,
        repository: str,
        location: str,
        digest: str,
        size: int | None,
        body: AsyncIterable[bytes],
    ) -> None:
        """Stream ``body`` in one PATCH, then commit with a body-less PUT ``?digest=``.

        PATCH-then-PUT is what every registry accepts (containers/image does the same); the
        registry checks the digest on the PUT, and ``body`` checks it before the PUT is sent.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        async with self.request(
            "PATCH",
            registry,
            location,
            scope=push_scope(repository),
            headers=headers,
            data=body,
            ok=(202, 204),
        ) as resp:
            location = self._location(registry, resp, default=location)
        sep = "&" if "?" in location else "?"
        async with self.request(
            "PUT",
            registry,
            f"{location}{sep}{urlencode({'digest': digest})}",
            scope=push_scope(repository),
            ok=(201, 204),
        ):
            pass

    async def cancel_upload(self, registry: str, repository: str, location: str) -> None:
        with contextlib.suppress(RegistryError):
            async with self.request(
                "DELETE", registry, location, scope=push_scope(repository), ok=(204, 200, 404)
            ):
                pass

    def _location(
        self, registry: str, resp: aiohttp.ClientResponse, default: str | None = None
    ) -> str:
        location = resp.headers.get("Location") or default
        if not location:
            raise Refused(registry, resp.status, "an upload began without a Location")
        return urljoin(str(resp.url), location)


def digest_of(data: bytes) -> str:
    import hashlib

    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def _raise_for(host: str, resp: aiohttp.ClientResponse, *, had_auth: bool) -> None:
    status = resp.status
    if status == 429:
        raise RateLimited(host, _retry_after(resp.headers.get("Retry-After")))
    if status >= 500:
        raise ServerError(host, status)
    codes: list[str] = []
    message = ""
    if resp.method != "HEAD":
        with contextlib.suppress(Exception):
            body = json.loads(await resp.content.read(64 * 1024))
            errors = body.get("errors") or []
            codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
            if errors and isinstance(errors[0], dict):
                message = str(errors[0].get("message", ""))[:200]
    if "TOOMANYREQUESTS" in codes:
        raise RateLimited(host, _retry_after(resp.headers.get("Retry-After")))
    if status == 404 or {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"} & set(codes):
        raise NotFound(host, message or "not found")
    if status in (401, 403) or {"DENIED", "UNAUTHORIZED"} & set(codes):
        raise AccessDenied(host, message or ("refused" if had_auth else "login needed"))
    raise Refused(host, status, " ".join(codes) or message)
