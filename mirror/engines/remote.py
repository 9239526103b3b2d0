"""The process's one registry client, shared (go-containerregistry's ``remote``).

Every registry request the bot makes itself goes through one
:class:`~mirror.engines.registry.client.RegistryClient`: the registry engine's copies, the
docker engine's size reads, the watches' HEADs and the lookups that answer a miss. So one
connection pool, one token cache, and one backoff and pull-limit state per registry host
(:class:`~mirror.engines.registry.hosts.HostState`): a 429 met by a copy holds back the
lookups too, and ``/status`` reads every pull limit from one place.

The client (and aiohttp) is built on first use: a dry run or a script that copies through
the daemon only never imports an HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.credentials import Credentials
from mirror.engines.base import DEFAULT_CERTS_DIR
from mirror.engines.registry.hosts import LONG_RETRY_AFTER

if TYPE_CHECKING:
    from mirror.engines.registry.client import RegistryClient
    from mirror.engines.registry.hosts import PullLimit

BLOB_CONCURRENCY = 8
"""Blobs the registry engine copies at once, per process."""


def connection_limit(blob_concurrency: int, streams: int) -> int:
    """Connections the client may hold at once: every blob slot reading with all its streams
    and uploading, plus room for manifests, existence checks, lookups and token fetches."""
    return blob_concurrency * (streams + 1) + 8


class Remote:
    """The one registry client, built on first use; closed by its owner (in the bot, the
    chooser that holds the engines, after them)."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        allowed_internal: Iterable[str] | None = None,
        certs_dir: Path = DEFAULT_CERTS_DIR,
        connections: int = connection_limit(BLOB_CONCURRENCY, 6),
        docker_config: Path | None = None,
        read_timeout: float = 120.0,
        long_retry_after: float = LONG_RETRY_AFTER,
    ) -> None:
        """``allowed_internal``: internal hosts the egress guard lets through; by default the
        registries we were told to speak plain HTTP to (the bot passes its explicit source
        allowlist and target too). ``docker_config``, ``read_timeout`` and
        ``long_retry_after`` are for tests."""
        self.credentials = dict(credentials or {})
        self.insecure = tuple(insecure)
        self.allowed_internal = tuple(
            self.insecure if allowed_internal is None else allowed_internal
        )
        self._certs_dir = certs_dir
        self._connections = connections
        self._docker_config = docker_config
        self._read_timeout = read_timeout
        self._long_retry_after = long_retry_after
        self._client: RegistryClient | None = None

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            from mirror.egress import EgressGuard
            from mirror.engines.registry.client import RegistryClient

            self._client = RegistryClient(
                self.credentials,
                insecure=self.insecure,
                docker_config=self._docker_config,
                read_timeout=self._read_timeout,
                guard=EgressGuard(self.allowed_internal),
                connections=self._connections,
                certs_dir=self._certs_dir,
                long_retry_after=self._long_retry_after,
            )
        return self._client

    def pull_limits(self) -> dict[str, PullLimit]:
        """Each registry's pull-limit counters as last seen by any request of this process
        (nothing seen, nothing built: nothing to say)."""
        return self._client.pull_limits() if self._client is not None else {}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
