"""Who we are to a registry: challenges, tokens and credentials, as one flow.

``RegistryAuth.flow`` is httpx's auth-flow habit: it yields the ``Authorization`` header to send,
is handed the response, and yields once more after a 401 that taught it something (a new
challenge, or a refused token to renew). The client only sends. Bearer tokens are cached per
registry and scope and renewed before they expire.

Credentials: the ones the bot was given (settings) first, else the docker client's own
configuration (``~/.docker/config.json`` or ``$DOCKER_CONFIG``) read through the Docker SDK, so
``credsStore`` and ``credHelpers`` (``docker-credential-*`` programs) work as they do for
``docker pull``. A helper runs as an asyncio subprocess with a timeout, never on the event
loop's thread: a slow one (ecr-login, gcloud, pass) must not freeze every chat.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from mirror.bounded import LRU, KeyedLocks
from mirror.credentials import Credential, Credentials
from mirror.errors import AccessDenied

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io"}
_TOKEN_MARGIN = 5.0  # renew a token this many seconds before it says it expires
_DEFAULT_TOKEN_LIFETIME = 60.0  # the distribution token spec's default ``expires_in``


def canonical_host(host: str) -> str:
    """``index.docker.io`` and friends are Docker Hub, written ``docker.io`` in references."""
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def delete_scope(repository: str) -> str:
    """Retention's: distribution's token servers grant ``delete`` by name (Docker Hub's ``*``
    covers it, and Hub refuses the deletion itself anyway)."""
    return f"repository:{repository}:delete"


TOKENS = 1000
"""Bearer tokens kept (one per registry and repository scope; each lives minutes anyway)."""
HELPER_TIMEOUT = 20.0
"""Seconds a ``docker-credential-*`` helper may take (ecr-login, gcloud and pass can be slow);
then it is killed and the registry is asked without a login."""


async def docker_config_credential(
    registry: str, path: Path | None = None, *, timeout: float = HELPER_TIMEOUT
) -> Credential | None:
    """The docker client's credential for ``registry``: ``credHelpers`` or ``credsStore``,
    else inline ``auths``, in the Docker SDK's order, read as ``docker pull`` reads them.

    The helper is a program that may take seconds: it runs as an asyncio subprocess with a
    timeout, never on the event loop's thread (docker-py runs it with a blocking
    ``subprocess.check_output`` and no timeout, so we run it ourselves; the SDK still reads
    the file and resolves the inline entries). A helper that fails, is missing, hangs or
    knows nothing of the host means no credential (anonymous access), not an error: the
    registry then says whether it needs one.
    """
    import docker.auth
    import docker.errors

    try:
        config = await asyncio.to_thread(docker.auth.load_config, str(path) if path else None)
    except (docker.errors.DockerException, OSError, ValueError) as exc:
        log.warning("could not read docker credentials for %s: %s", registry, type(exc).__name__)
        return None
    hub = canonical_host(registry) == DOCKER_HUB
    key = None if hub else registry  # the SDK's key for Docker Hub
    store = (
        config.get_credential_store(key) if (config.creds_store or config.cred_helpers) else None
    )
    if store:
        found = await _ask_helper(str(store), docker.auth.INDEX_URL if hub else registry, timeout)
        if found is not None:
            return found
    inline = docker.auth.AuthConfig({"auths": config.auths})  # the file's entries, no helper
    entry = inline.resolve_authconfig(registry)
    if entry is None and hub:
        entry = inline.resolve_authconfig(None)
    return _credential_of(entry)


async def _ask_helper(store: str, server: str, timeout: float) -> Credential | None:
    """``docker-credential-STORE get`` (the credential-helper protocol: the server on stdin,
    ``{"Username", "Secret"}`` out), killed with its children after ``timeout`` seconds."""
    program = f"docker-credential-{store}"
    found = shutil.which(program)
    if found is None:
        log.warning("%s is not installed: %s is asked without a login", program, server)
        return None
    helper = await asyncio.create_subprocess_exec(
        found,
        "get",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so a timeout ends what it started
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await helper.communicate(server.encode())
    except BaseException as exc:  # the timeout, or the copy that asked was cancelled
        with contextlib.suppress(ProcessLookupError):
            os.killpg(helper.pid, signal.SIGKILL)
        await asyncio.shield(helper.wait())
        if isinstance(exc, TimeoutError):
            log.warning(
                "%s gave no answer within %.0f s: %s is asked without a login",
                program,
                timeout,
                server,
            )
            return None
        raise
    if helper.returncode != 0:
        return None  # "credentials not found": the file's own entries may have it
    try:
        answer = json.loads(out)
    except ValueError:
        log.warning("%s answered something that is not JSON", program)
        return None
    if not isinstance(answer, dict) or not (answer.get("Username") or answer.get("Secret")):
        return None
    if answer.get("Username") == "<token>":  # the SDK's TOKEN_USERNAME: an identity token
        return _credential_of({"IdentityToken": answer.get("Secret")})
    return _credential_of({"Username": answer.get("Username"), "Password": answer.get("Secret")})


def _credential_of(found: object) -> Credential | None:
    if not isinstance(found, Mapping):
        return None
    entry = {str(k).lower(): v for k, v in found.items()}
    username, password = entry.get("username"), entry.get("password")
    if entry.get("identitytoken") and not password:
        username, password = "<token>", entry["identitytoken"]
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credential(username, password)
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: Mapping[str, str]


@dataclass
class _Token:
    value: str
    expires: float


def parse_challenge(header: str) -> Challenge | None:
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
    return Challenge(scheme.lower(), params)


def basic(cred: Credential) -> str:
    pair = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


TokenFetch = Callable[[str, str, Mapping[str, str]], Awaitable[Any]]
"""(registry host, token URL, headers) -> the token service's JSON answer; the client sends it
through the same error mapping and host backoff as every other request."""


class RegistryAuth:
    """Auth state of every registry: the challenge each asked for, tokens per scope."""

    def __init__(
        self,
        fetch_token: TokenFetch,
        credentials: Credentials | None = None,
        *,
        docker_config: Path | None = None,
    ) -> None:
        self._fetch_token = fetch_token
        self._explicit = {canonical_host(k): v for k, v in (credentials or {}).items()}
        self._docker_config = docker_config
        self._from_config: dict[str, Credential | None] = {}
        self._config_locks: dict[str, asyncio.Lock] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: LRU[tuple[str, str], _Token] = LRU(TOKENS)
        """Per registry and scope (a repository): the most recently used, not every one seen."""
        self._token_locks = KeyedLocks()

    async def credential(self, registry: str) -> Credential | None:
        """The login for ``registry``: the bot's, else the docker client's (a helper runs
        once per host, off the event loop, however many requests ask at once)."""
        host = canonical_host(registry)
        if host in self._explicit:
            return self._explicit[host]
        if host not in self._from_config:
            async with self._config_locks.setdefault(host, asyncio.Lock()):
                if host not in self._from_config:
                    found = await docker_config_credential(host, self._docker_config)
                    self._from_config[host] = found
            self._config_locks.pop(host, None)
        return self._from_config[host]

    async def flow(
        self, registry: str, scope: str, *, replayable: bool
    ) -> AsyncGenerator[str | None, tuple[int, str]]:
        """Yield the header to send; sent (status, ``WWW-Authenticate``) of the response;
        yield once more after a 401 that taught us something.

        A 401 on a body that cannot be sent again (a streamed upload) forgets the token and
        raises ``TokenRejected`` through the caller, which redoes its whole unit.
        """
        from mirror.errors import TokenRejected

        host = canonical_host(registry)
        sent = await self._header(host, scope, renew=False)
        status, challenge = yield sent
        if status != 401 or not await self.learn(host, challenge):
            return
        if not replayable:
            self._tokens.pop((host, scope), None)
            raise TokenRejected(host, "authorization refused during an upload")
        yield await self._header(host, scope, renew=sent is not None)

    async def learn(self, registry: str, header: str) -> bool:
        """Remember the challenge of a 401; True when it tells us something to try."""
        host = canonical_host(registry)
        challenge = parse_challenge(header)
        useful = challenge is not None and challenge.scheme in ("bearer", "basic")
        if useful and challenge is not None:
            if challenge.scheme == "basic" and await self.credential(host) is None:
                useful = False
            else:
                self._challenges[host] = challenge
        return useful

    async def _header(self, host: str, scope: str, *, renew: bool) -> str | None:
        """The Authorization header for ``scope`` at ``host``, from what it asked before."""
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            cred = await self.credential(host)
            return basic(cred) if cred else None
        if challenge.scheme != "bearer":
            return None
        key = (host, scope)
        async with self._token_locks.hold(key):
            token = self._tokens.get(key)
            if renew or token is None or token.expires <= time.monotonic():
                token = await self._token(host, challenge, scope)
                self._tokens[key] = token
        return f"Bearer {token.value}"

    async def _token(self, host: str, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise AccessDenied(host, "the registry asked for a token without saying where")
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.extend(("scope", part) for part in scope.split(" ") if part)
        cred = await self.credential(host)
        headers = {"Authorization": basic(cred)} if cred else {}
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        started = time.monotonic()
        body = await self._fetch_token(host, url, headers)
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise AccessDenied(host, "the token service gave no token")
        try:
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = _DEFAULT_TOKEN_LIFETIME
        margin = min(_TOKEN_MARGIN, lifetime / 4)
        return _Token(value, started + lifetime - margin)
