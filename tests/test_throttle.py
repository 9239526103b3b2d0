"""The throttling relay itself: the benchmarks' link model is measured, not assumed.

Each timing here is a lower bound that only the relay can break: a cap means a transfer cannot
be faster than bytes ÷ cap, and a delay means no answer comes sooner. A busy machine makes
transfers slower, never faster, so these cannot fail because of load. The measured rates are
printed (``-s``) for whoever wants to see the model at work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.local_http import serve_locally
from tests.support.throttle import Seen, ThrottledRelay, throttled

pytestmark = pytest.mark.slow  # real-time transfers of a few seconds

BODY = 1_500_000


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """An HTTP server with a body of ``BODY`` bytes at ``/blob`` and a tiny ``/ping``."""

    async def blob(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * BODY)

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def upload(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application()
    app.router.add_get("/blob", blob)
    app.router.add_get("/ping", ping)
    app.router.add_patch("/upload", upload)
    runner, port = await serve_locally(app)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _get(address: str, path: str, count: int = 1) -> int:
    """GET ``path`` ``count`` times over one keep-alive connection; the body bytes read."""
    reader, writer = await asyncio.open_connection(*address.split(":"))
    received = 0
    try:
        for _ in range(count):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            received += len(await reader.readexactly(length))
    finally:
        writer.close()
    return received


async def _timed(relay: ThrottledRelay, path: str, connections: int) -> tuple[float, int]:
    started = time.perf_counter()
    sizes = await asyncio.gather(*(_get(relay.address, path) for _ in range(connections)))
    return time.perf_counter() - started, sum(sizes)


async def test_the_total_cap_holds_for_the_whole_link(upstream: str) -> None:
    """Two connections, each allowed 8 MB/s, through a 2 MB/s link: the link decides."""
    total = 2_000_000
    with throttled(upstream, 8_000_000, total=total) as relay:
        seconds, moved = await _timed(relay, "/blob", 2)
    assert moved == 2 * BODY
    print(f"2 connections through a {total / 1e6:g} MB/s link: {moved / seconds / 1e6:.2f} MB/s")
    # The first chunk may go out at once: a twentieth of a second of the link, no more.
    assert seconds >= (moved - total / 20) / total


async def test_the_per_connection_cap_holds_for_each_connection(upstream: str) -> None:
    """One connection at 1 MB/s takes its time; a second one is not slowed by the first
    (no total cap): two together take about as long as one."""
    rate = 1_000_000
    with throttled(upstream, rate) as relay:
        one, moved_one = await _timed(relay, "/blob", 1)
        two, moved_two = await _timed(relay, "/blob", 2)
    print(
        f"per-connection cap {rate / 1e6:g} MB/s: one connection {moved_one / one / 1e6:.2f} MB/s,"
        f" two together {moved_two / two / 1e6:.2f} MB/s"
    )
    assert one >= (BODY - rate / 20) / rate
    assert two >= (BODY - rate / 20) / rate
    # Two connections moved twice the bytes: more than one connection's cap allows in that time.
    assert moved_two / two > rate


async def test_each_request_waits_the_delay_and_is_counted(upstream: str) -> None:
    delay = 0.2
    with throttled(upstream, None, delay) as relay:
        started = time.perf_counter()
        await _get(relay.address, "/ping", count=3)
        seconds = time.perf_counter() - started
        seen = relay.requests
        connections = relay.connections
    print(f"a new connection and 3 requests over a {delay * 1000:.0f} ms link: {seconds:.2f} s")
    assert seconds >= 4 * delay  # the handshake, then each of three requests
    assert seen == [Seen("GET", "/ping")] * 3
    assert connections == 1


async def test_requests_with_bodies_are_counted_once_each(upstream: str) -> None:
    """A body that holds what looks like a request line is a body, not a request."""
    body = b"GET /not-a-request HTTP/1.1\r\n\r\n" * 100
    with throttled(upstream, None) as relay:
        reader, writer = await asyncio.open_connection(*relay.address.split(":"))
        try:
            for _ in range(2):
                writer.write(
                    b"PATCH /upload HTTP/1.1\r\nHost: x\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                assert b" 200 " in head.split(b"\r\n")[0]
                await reader.readexactly(len(str(len(body))))
            writer.write(
                b"PATCH /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + f"{len(body):x}\r\n".encode()
                + body
                + b"\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
        await asyncio.sleep(0.1)
        seen = relay.requests
    assert seen == [Seen("PATCH", "/upload")] * 3 + [Seen("GET", "/ping")]
