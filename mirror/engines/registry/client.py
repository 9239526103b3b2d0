"""A small async client of the OCI distribution API (aiohttp); the process has one, shared by
the engines and the lookups (:mod:`mirror.engines.remote`).

It knows only what a copier needs: manifests, blobs, uploads and mounts, plain HTTP for
insecure registries, and how registry answers become the typed errors of :mod:`mirror.errors`
(the ``RegistryError`` branch). It never
retries: the engine retries whole units (one manifest, one blob copy) in one loop. Every
request to a host waits for that host's backoff (``hosts``), and every failure to get an
answer is mapped to our errors in one place (``_errors``), for token fetches as for requests.
Bodies are never buffered here: blobs go through as streams.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from mirror.credentials import Credential, Credentials
from mirror.egress import EgressGuard
from mirror.engines.base import DEFAULT_CERTS_DIR
from mirror.engines.registry.auth import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    RegistryAuth,
    canonical_host,
    delete_scope,
    pull_scope,
    push_scope,
)
from mirror.engines.registry.hosts import LONG_RETRY_AFTER, HostState, PullLimit
from mirror.errors import (
    AccessDenied,
    DigestMismatch,
    EgressDenied,
    Forbidden,
    NotFound,
    PlainHttp,
    Refused,
    RegistryError,
    ServerError,
    TimedOut,
    Unreachable,
    Untrusted,
)
from mirror.text import Text

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX})
MANIFEST_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry holds it: exact bytes, media type, digest."""

    data: bytes
    media_type: str
    digest: str

    def document(self) -> dict[str, Any]:
        with contextlib.suppress(ValueError):
            doc = json.loads(self.data)
            if isinstance(doc, dict):
                return doc
        return {}

    def blobs(self) -> dict[str, int | None]:
        """Digest -> size of the blobs it names (config, layers); foreign layers (with
        ``urls``, Windows base images) stay where they are and are not ours to copy."""
        found: dict[str, int | None] = {}
        doc = self.document()
        for key in ("config", "layers", "blobs"):
            for entry in descriptors(doc.get(key)):
                if not entry.get("urls"):
                    size = entry.get("size")
                    found.setdefault(entry["digest"], size if isinstance(size, int) else None)
        return found


def descriptors(value: Any) -> list[dict[str, Any]]:
    """The well-formed descriptors of a manifest field (one or a list)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


_REFERRER_PAGES = 20  # a paginated referrers list longer than this is not ours to copy


def _next_page(resp: aiohttp.ClientResponse) -> str | None:
    """The ``Link: <...>; rel="next"`` of a paginated answer, as an absolute URL."""
    link = resp.links.get("next")
    url = link.get("url") if link else None
    return urljoin(str(resp.url), str(url)) if url else None


def _env_matters() -> bool:
    """Whether the environment names a proxy (or a netrc file) for aiohttp to read.

    aiohttp's ``trust_env`` reads them again for every request (the whole environment, and
    ``~/.netrc``, in a worker thread each time): a round of thread hops per request that a
    bot with neither pays for nothing. So it is on only when there is something to read."""
    from urllib.request import getproxies

    from aiohttp.helpers import netrc_from_env

    return bool(getproxies()) or netrc_from_env() is not None


def _plain_http(exc: BaseException) -> bool:
    """TLS spoken to a plain-HTTP server fails in the handshake with these words."""
    text = f"{exc} {exc.__cause__ or ''}".lower()
    return isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError) and any(
        word in text for word in ("wrong_version_number", "wrong version number", "http request")
    )


class RegistryClient:
    """One aiohttp session for every registry; auth and backoff kept per registry host."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        docker_config: Path | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 120.0,
        guard: EgressGuard | None = None,
        connections: int = 32,
        certs_dir: Path = DEFAULT_CERTS_DIR,
        long_retry_after: float = LONG_RETRY_AFTER,
    ) -> None:
        self._long_retry_after = long_retry_after
        self._guard = guard or EgressGuard(())
        self._connections = connections
        self._certs_dir = certs_dir
        self._ssl: dict[str, ssl.SSLContext | bool] = {}
        self._insecure = {canonical_host(h) for h in insecure}
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self.auth = RegistryAuth(self._fetch_token, credentials, docker_config=docker_config)
        self._hosts: dict[str, HostState] = {}

    # -- plumbing -------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=_env_matters(),  # HTTPS_PROXY / NO_PROXY, as DESIGN.md asks
                auto_decompress=False,  # blobs are hashed as stored, never re-encoded
                connector=aiohttp.TCPConnector(
                    limit=self._connections, resolver=self._guard.resolver()
                ),
                trace_configs=[self._guard.trace_config()],
            )
        return self._session

    def ssl_for(self, url: str) -> ssl.SSLContext | bool:
        """The TLS set-up for ``url``'s host, as the docker client has it: the system's CAs,
        plus ``CERTS_DIR/HOST[:PORT]/*.crt``, and ``client.cert``/``client.key`` for mutual
        TLS; one context per host, built once."""
        parts = urlsplit(url)
        netloc, hostname = parts.netloc.rpartition("@")[2].lower(), (parts.hostname or "")
        if netloc not in self._ssl:
            self._ssl[netloc] = _ssl_context(self._certs_dir, (netloc, hostname))
        return self._ssl[netloc]

    def _ca_hint(self, url: str) -> Text:
        """The sentence a person reads (a copy's failure, ``mirror-bot check``), in the catalog."""
        netloc = urlsplit(url).netloc.rpartition("@")[2].lower()
        return Text(
            "The certificate of {host} is not trusted: put its CA in {path}.",
            host=netloc,
            path=str(self._certs_dir / netloc / "ca.crt"),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def base_url(self, registry: str) -> str:
        host = canonical_host(registry)
        api = DOCKER_HUB_API if host == DOCKER_HUB else host
        scheme = "http" if host in self._insecure else "https"
        return f"{scheme}://{api}"

    async def credential(self, registry: str) -> Credential | None:
        return await self.auth.credential(registry)

    def host(self, registry: str) -> HostState:
        host = canonical_host(registry)
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = HostState(host, long_retry_after=self._long_retry_after)
        return state

    def pull_limit(self, registry: str) -> PullLimit | None:
        """``RateLimit-Limit`` / ``RateLimit-Remaining`` as ``registry`` last sent them."""
        state = self._hosts.get(canonical_host(registry))
        return state.pull_limit if state else None

    def pull_limits(self) -> dict[str, PullLimit]:
        """Every registry's pull-limit counters this client has seen, by host."""
        return {h: s.pull_limit for h, s in self._hosts.items() if s.pull_limit is not None}

    @contextlib.contextmanager
    def _errors(self, host: str, what: str = "", url: str = "") -> Iterator[None]:
        """Failures to get an answer from ``host`` (or its token service), as our errors."""
        prefix = f"{what}: " if what else ""
        try:
            yield
        except aiohttp.ClientConnectorCertificateError as exc:
            raise Untrusted(host, self._ca_hint(url or self.base_url(host))) from exc
        except EgressDenied as exc:
            raise Forbidden(host, f"{prefix}{exc.host}" if what else exc.host) from exc
        except aiohttp.ClientError as exc:
            cause = getattr(exc, "os_error", None)
            if isinstance(cause, EgressDenied):  # the guard's refusal, from the resolver
                raise Forbidden(host, cause.host) from exc
            if _plain_http(exc):
                raise PlainHttp(host, "it answers plain HTTP") from exc
            raise Unreachable(host, f"{prefix}{type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise TimedOut(host, what) from exc

    async def _fetch_token(self, host: str, url: str, headers: Mapping[str, str]) -> Any:
        state = self.host(host)
        await state.wait()
        registry_host = urlsplit(self.base_url(host)).hostname
        with self._errors(host, "token service", url):
            async with self._http().get(
                url,
                headers=headers,
                trace_request_ctx={"same_host_as": registry_host},
                ssl=self.ssl_for(url),
            ) as resp:
                state.observe(resp.headers)
                if resp.status in (401, 403):
                    raise AccessDenied(host, "the token service refused the credentials")
                if resp.status == 429:
                    raise state.limited(resp.headers.get("Retry-After"))
                if resp.status >= 500:
                    raise ServerError(host, resp.status)
                if resp.status != 200:
                    raise Refused(host, resp.status, "from the token service")
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise Refused(
                        host, 200, "the token service answered something not JSON"
                    ) from exc

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
        """Send with auth (the ``RegistryAuth`` flow), yield the response if its status is in
        ``ok``, else raise the typed error. ``url`` may be a path below the registry."""
        host = canonical_host(registry)
        if url.startswith("/"):
            url = self.base_url(host) + url
        statuses = set(ok)
        state = self.host(host)
        flow = self.auth.flow(host, scope, replayable=not isinstance(data, AsyncIterable))
        try:
            auth = await anext(flow)
            while True:
                await state.wait()
                all_headers = dict(headers or {})
                if auth:
                    all_headers["Authorization"] = auth
                with self._errors(host, url=url):
                    resp = await self._http().request(
                        method,
                        url,
                        headers=all_headers,
                        data=data,
                        allow_redirects=allow_redirects,
                        ssl=self.ssl_for(url),
                    )
                try:
                    state.observe(resp.headers)
                    if resp.status == 401:
                        challenge = resp.headers.get("WWW-Authenticate", "")
                        try:
                            auth = await flow.asend((401, challenge))
                            continue
                        except StopAsyncIteration:
                            pass
                    if resp.status in statuses:
                        yield resp
                        return
                    await _raise_for(state, resp, had_auth=auth is not None)
                finally:
                    resp.release()
        finally:
            await flow.aclose()

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
        found = await self.resolve(registry, repository, reference)
        return found[0] if found else None

    async def resolve(
        self, registry: str, repository: str, reference: str
    ) -> tuple[str, str] | None:
        """(digest, media type) of ``reference``, or None when there is none.

        HEAD, which Docker Hub does not count against its pull limit; a GET only for a
        registry that does not say the digest in its answer.
        """
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
                media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        except NotFound:
            return None
        if digest and media_type:
            return digest, media_type
        manifest = await self.get_manifest(registry, repository, reference)
        return manifest.digest, manifest.media_type

    async def referrers(
        self, registry: str, repository: str, digest: str
    ) -> list[dict[str, Any]] | None:
        """The descriptors the OCI 1.1 referrers API lists for ``digest`` (every page), or
        None when the registry does not serve the API (404 or a refusal, as the spec says
        a registry without it answers)."""
        url: str | None = f"/v2/{repository}/referrers/{digest}"
        found: list[dict[str, Any]] = []
        pages = 0
        while url is not None and pages < _REFERRER_PAGES:
            pages += 1
            try:
                async with self.request(
                    "GET",
                    registry,
                    url,
                    scope=pull_scope(repository),
                    headers={"Accept": MEDIA_OCI_INDEX},
                ) as resp:
                    data = await resp.read()
                    media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
                    url = _next_page(resp)
            except NotFound:
                return None
            except Refused as exc:
                if exc.status in (400, 405, 406):
                    return None
                raise
            if media_type != MEDIA_OCI_INDEX:
                return None  # an HTML page or some other answer: not the API
            document = Manifest(data, media_type, digest_of(data)).document()
            found.extend(descriptors(document.get("manifests")))
        return found

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

    async def delete_manifest(self, registry: str, repository: str, digest: str) -> None:
        """Delete the manifest ``digest`` (and so every tag pointing at it): retention. A
        registry that does not allow deleting answers 405 (``Refused``), one that no longer
        has it 404 (``NotFound``)."""
        async with self.request(
            "DELETE",
            registry,
            f"/v2/{repository}/manifests/{digest}",
            scope=delete_scope(repository),
            ok=(202, 200, 204),
        ):
            pass

    # -- tags -----------------------------------------------------------------------------------

    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = 1000, max_pages: int = 50
    ) -> list[str]:
        """Every tag of ``repository``, following ``Link: <...>; rel="next"`` pages.

        ``n`` asks for pages of ``page_size`` (registries cap it anyway: Docker Hub at 100,
        distribution at 1000); ``max_pages`` bounds a repository with a runaway tag count.
        """
        tags, _ = await self.tag_listing(
            registry, repository, page_size=page_size, max_pages=max_pages
        )
        return tags

    async def tag_listing(
        self, registry: str, repository: str, *, page_size: int = 1000, max_pages: int = 50
    ) -> tuple[list[str], bool]:
        """The tags of ``repository`` (as :meth:`list_tags`) and whether that is all of them
        (False: more pages than ``max_pages``)."""
        url = f"/v2/{repository}/tags/list?{urlencode({'n': page_size})}"
        tags: list[str] = []
        for _ in range(max_pages):
            async with self.request("GET", registry, url, scope=pull_scope(repository)) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError as exc:
                    raise Refused(registry, 200, "the tag list is not JSON") from exc
                following = _next_page(resp)
            found = body.get("tags") if isinstance(body, dict) else None
            tags.extend(t for t in found or () if isinstance(t, str))
            if following is None:
                return list(dict.fromkeys(tags)), True
            url = following
        return list(dict.fromkeys(tags)), False

    async def get_json_blob(
        self, registry: str, repository: str, digest: str, *, limit: int = 1 << 20
    ) -> dict[str, Any]:
        """A small JSON blob (an image config), verified; {} when it is not a JSON object."""
        async with self.open_blob(registry, repository, digest) as resp:
            data = await resp.content.read(limit)
        if digest_of(data) != digest:
            raise DigestMismatch(registry, f"{digest} arrived as {digest_of(data)}")
        with contextlib.suppress(ValueError):
            doc = json.loads(data)
            if isinstance(doc, dict):
                return doc
        return {}

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
        self, registry: str, repository: str, digest: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The blob's response, to be read as a stream (redirects to a CDN are followed,
        without our Authorization header, which aiohttp drops across origins).

        ``start``/``end`` ask for bytes ``[start, end)`` with a ``Range`` header; the answer is
        206 when the source (or its storage) honours it, 200 with the whole blob when not.
        """
        headers: dict[str, str] = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={start}-{last}"
        async with self.request(
            "GET",
            registry,
            f"/v2/{repository}/blobs/{digest}",
            scope=pull_scope(repository),
            headers=headers,
            ok=(200, 206),
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


async def _raise_for(state: HostState, resp: aiohttp.ClientResponse, *, had_auth: bool) -> None:
    host, status = state.host, resp.status
    if status == 429:
        raise state.limited(resp.headers.get("Retry-After"))
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
        raise state.limited(resp.headers.get("Retry-After"))
    if status == 404 or {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"} & set(codes):
        raise NotFound(host, message or "not found")
    if status in (401, 403) or {"DENIED", "UNAUTHORIZED"} & set(codes):
        raise AccessDenied(host, message or ("refused" if had_auth else "login needed"))
    raise Refused(host, status, " ".join(codes) or message)


def _ssl_context(certs_dir: Path, names: tuple[str, str]) -> ssl.SSLContext | bool:
    """``True`` (aiohttp's default verification) unless the directory names this host."""
    for name in names:
        folder = certs_dir / name
        if name and folder.is_dir():
            break
    else:
        return True
    context = ssl.create_default_context()
    for ca in sorted(folder.glob("*.crt")):
        context.load_verify_locations(cafile=ca)
    cert, key = folder / "client.cert", folder / "client.key"
    if cert.is_file() and key.is_file():
        context.load_cert_chain(cert, key)
    return context
