"""Where the registry engine may connect: never an internal address the operator did not name.

Checking the source's name once is not enough against server-side request forgery: names can
resolve to 127.0.0.1 or 169.254.169.254, blob downloads redirect to storage URLs, and a token
challenge names its own realm. So every connection the registry client opens goes through this
guard: a resolver for names, and request hooks for IP literals and redirect targets.

Through a forward proxy (``HTTPS_PROXY``, ``HTTP_PROXY``) the bot connects to the proxy, which
the operator configured and so is trusted, whatever address it has; the destination is still
checked: a literal, or a name the bot can resolve itself, before the request leaves. A name only
the proxy can resolve is the proxy's to police (README, "Behind a proxy").
"""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from mirror.errors import EgressDenied
from mirror.hosts import is_internal_address, is_internal_host

__all__ = ["EgressDenied", "EgressGuard"]


class EgressGuard:
    """Allows internal destinations only when named (``host`` or ``host:port``)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(a.lower() for a in allowed)
        self._proxies = _proxy_hosts()

    def is_proxy(self, host: str) -> bool:
        """Whether ``host`` is a forward proxy from the environment (trusted: the operator's)."""
        return host.lower().rstrip(".") in self._proxies

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

    async def _check_proxied_name(self, url: URL) -> None:
        """A destination reached through a proxy is never resolved by our resolver; resolve
        its name here, so a name leading inside is refused as it is without a proxy."""
        if not self._proxies:
            return  # no proxy in the environment (read once): the resolver sees every name
        host = url.raw_host or ""
        try:
            get_env_proxy_for_url(url)
        except LookupError:
            return  # no proxy for this URL: the resolver sees the name
        if is_internal_host(host) or self.allows(host, url.port):
            return  # literals and localhost: check_url decided
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, url.port, type=socket.SOCK_STREAM
            )
        except OSError:
            return  # a name only the proxy can resolve: its own egress rules apply
        if any(is_internal_address(str(info[4][0])) for info in infos):
            raise EgressDenied(host)

    def resolver(self) -> AbstractResolver:
        return _GuardedResolver(self)

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def on_start(_: Any, context: SimpleNamespace, params: Any) -> None:
            extra = context.trace_request_ctx
            same_host = extra.get("same_host_as") if isinstance(extra, dict) else None
            self.check_url(params.url, same_host_as=same_host)
            if same_host is None or (params.url.raw_host or "").lower() != same_host.lower():
                await self._check_proxied_name(params.url)

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
        if self._guard.is_proxy(host):
            return results
        if not self._guard.allows(host, port) and any(
            is_internal_address(r["host"]) for r in results
        ):
            raise EgressDenied(host)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _proxy_hosts() -> frozenset[str]:
    """The hosts of the forward proxies the environment names (any scheme, any case)."""
    hosts = set()
    for scheme, address in urllib.request.getproxies().items():
        if scheme != "no":
            host = URL(address if "://" in address else f"http://{address}").raw_host
            if host:
                hosts.add(host.lower().rstrip("."))
    return frozenset(hosts)
