"""Where the registry engine may connect: never an internal address the operator did not name.

Checking the source's name once is not enough against server-side request forgery: names can
resolve to 127.0.0.1 or 169.254.169.254, blob downloads redirect to storage URLs, and a token
challenge names its own realm. So every connection the registry client opens goes through this
guard: a resolver for names, and request hooks for IP literals and redirect targets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from mirror.hosts import is_internal_address, is_internal_host


class EgressDenied(OSError):
    """A connection to an internal address that nobody allowed."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} is an internal address")
        self.host = host


class EgressGuard:
    """Allows internal destinations only when named (``host`` or ``host:port``)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(a.lower() for a in allowed)

    def allows(self, host: str, port: int | None) -> bool:
        host = host.lower().rstrip(".")
        bracketed = f"[{host}]" if ":" in host else host
        return host in self._allowed or f"{bracketed}:{port}" in self._allowed

    def check_url(self, url: URL, *, same_host_as: str | None = None) -> None:
        """Refuse a URL whose host is an internal literal or ``localhost`` (names: resolver).

        ``same_host_as`` lets a token realm live on the machine of the registry that named it,
        as registry and token server usually do, on another port.
        """
        host = (url.raw_host or "").lower()
        if same_host_as is not None and host == same_host_as.lower():
            return
        if is_internal_host(host) and not self.allows(host, url.port):
            raise EgressDenied(host)

    def resolver(self) -> AbstractResolver:
        return _GuardedResolver(self)

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def on_start(_: Any, context: SimpleNamespace, params: Any) -> None:
            extra = context.trace_request_ctx
            same_host = extra.get("same_host_as") if isinstance(extra, dict) else None
            self.check_url(params.url, same_host_as=same_host)

        async def on_redirect(_: Any, __: SimpleNamespace, params: Any) -> None:
            location = params.response.headers.get("Location")
            if location:
                self.check_url(params.url.join(URL(location)))

        config.on_request_start.append(on_start)
        config.on_request_redirect.append(on_redirect)
        return config


class _GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that lead to internal addresses."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._guard.allows(host, port) and any(
            is_internal_address(r["host"]) for r in results
        ):
            raise EgressDenied(host)
        return results

    async def close(self) -> None:
        await self._inner.close()
