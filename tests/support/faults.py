"""A fault-injecting HTTP proxy in front of a real registry (aiohttp.web).

Tests put it between the registry engine and the lab's source registry and tell it what to
break: answer 429 with ``Retry-After`` or 503, drop the connection after N bytes of a body,
stall mid-body, or flip one byte; or strip ``Range`` from every request, as a source that
ignores it would. Everything else passes through untouched, and every request is logged (its
``Range`` too) and the body bytes sent per path counted, so a test can tell what the engine
asked for, when, and how much it read.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.local_http import serve_locally

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "te",
    "trailer",
    "upgrade",
}


@dataclass
class Fault:
    """Break requests matching ``method`` and the ``path`` regex, ``times`` times (-1: always).

    ``kind``: ``status`` (answer ``status`` with ``headers``), ``headers`` (pass the request
    through and add ``headers`` to the real answer, as Docker Hub adds ``RateLimit-*``),
    ``drop`` (send ``after`` bytes of the real body, then close the connection), ``stall``
    (send ``after`` bytes, then hang for ``seconds``), ``corrupt`` (flip the byte at offset
    ``after``).
    """

    kind: str
    path: str
    method: str = "GET"
    times: int = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    seconds: float = 30.0
    body: str = "fault\n"
    """What a ``status`` fault answers (a registry's JSON error, to play Harbor)."""

    def matches(self, request: web.Request) -> bool:
        return (
            self.times != 0
            and request.method == self.method
            and re.search(self.path, request.path) is not None
        )


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    at: float
    fault: str | None
    range: str | None = None
    wall: float = 0.0
    """``time.time()`` of the request, to compare with a stored wall-clock time."""


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.sent: Counter[str] = Counter()
        """Body bytes sent to the client, per request path."""
        self.strip_range = False
        self.address = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.search(path, s.path)]

    async def start(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, port = await serve_locally(app, handle_signals=False, shutdown_timeout=0.5)
        self.address = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _fault_for(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.matches(request):
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._fault_for(request)
        self.seen.append(
            Seen(
                request.method,
                request.path,
                time.monotonic(),
                fault.kind if fault else None,
                request.headers.get("Range"),
                time.time(),
            )
        )
        if fault is not None and fault.kind == "status":
            return web.Response(status=fault.status, headers=fault.headers, text=fault.body)
        added: dict[str, str] = {}
        if fault is not None and fault.kind == "headers":
            added, fault = fault.headers, None
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.strip_range:
            headers.pop("Range", None)
        body = await request.read()
        async with self._session.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers[key] = value
            response.headers.update(added)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            sent = 0
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if fault is not None and sent + len(chunk) > fault.after:
                    cut = fault.after - sent
                    if fault.kind == "corrupt":
                        chunk = chunk[:cut] + bytes([chunk[cut] ^ 0xFF]) + chunk[cut + 1 :]
                        fault = None
                    else:
                        await response.write(chunk[:cut])
                        self.sent[request.path] += cut
                        if fault.kind == "stall":
                            await asyncio.sleep(fault.seconds)
                        assert request.transport is not None
                        request.transport.close()
                        return response
                await response.write(chunk)
                sent += len(chunk)
                self.sent[request.path] += len(chunk)
            await response.write_eof()
            return response


@asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
