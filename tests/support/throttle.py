"""A bandwidth-limited TCP relay, so a copy lasts long enough to be interrupted on purpose, and
the long link of the copy benchmark's WAN mode.

It models both kinds of link a copy meets: a cap per connection (what one TCP stream gets over
a long, lossy path) and a cap for the whole link (a full border link, shared by every
connection), with a delay per request and per new connection. It also counts the HTTP
requests that pass through it, so a benchmark can say how many round trips a copy cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]$")


@dataclass(frozen=True)
class Seen:
    """One HTTP request that went through the relay."""

    method: str
    path: str
    at: float = field(default=0.0, compare=False)
    """When it reached the upstream (``time.monotonic()``)."""


class _Link:
    """The whole link's budget: ``total`` bytes/s shared by every connection, first come first
    served in chunks (each connection asks for one chunk at a time, so they take turns)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._next = 0.0

    async def take(self, size: int) -> None:
        """Wait until the link has room for ``size`` bytes, and book them."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next)
        self._next = start + size / self.total
        if start > now:
            await asyncio.sleep(start - now)


class _RequestReader:
    """Finds request lines in what a client sends (HTTP/1.1, keep-alive, bodies skipped by
    ``Content-Length`` or chunked encoding): the relay's access log, whatever the upstream."""

    def __init__(self, seen: list[Seen]) -> None:
        self._seen = seen
        self._buffer = b""
        self._body = 0  # bytes of the current body still to skip
        self._chunked = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        if self._body:
            skip = min(self._body, len(self._buffer))
            self._buffer, self._body = self._buffer[skip:], self._body - skip
            return bool(self._buffer) and not self._body
        if self._chunked:
            line, found, rest = self._buffer.partition(b"\r\n")
            if not found:
                return False
            size = int(line.split(b";")[0].strip() or b"0", 16)
            self._buffer = rest
            if size == 0:  # the last chunk, then an empty trailer
                self._chunked = False
                self._body = 2
            else:
                self._body = size + 2  # the chunk and its CRLF
            return True
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if not found:
            return False
        self._buffer = rest
        lines = head.split(b"\r\n")
        match = _REQUEST_LINE.match(lines[0].strip())
        if match:
            self._seen.append(Seen(match[1].decode(), match[2].decode("latin-1"), time.monotonic()))
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length" and value.isdigit():
                self._body = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
        return True


class ThrottledRelay:
    """Relays 127.0.0.1:port -> upstream (``host:port`` or ``unix:///path``), sending
    downstream at most ``rate`` bytes/s per connection and ``total`` bytes/s for all of them
    together (None: no such cap); :meth:`cut` drops every connection at once, as a daemon or
    registry that goes away would.

    ``delay`` (seconds) is a long link's round trip: a new connection waits it once (the TCP
    handshake) and every byte the client sends reaches the upstream that much later (so each
    request waits it), without delaying bytes sent together more than once.

    ``requests`` lists the HTTP requests clients sent through it, in order; ``connections``
    counts the connections it accepted; ``sent`` the bytes it relayed downstream.
    """

    def __init__(
        self,
        upstream: str,
        rate: int | None,
        delay: float = 0.0,
        *,
        total: int | None = None,
    ) -> None:
        self._upstream = upstream
        self._rate = rate
        self._delay = delay
        self._link = _Link(total) if total else None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._seen: list[Seen] = []
        self.connections = 0
        self.sent = 0
        self.address = ""

    @property
    def requests(self) -> list[Seen]:
        return list(self._seen)

    def reset_counts(self) -> None:
        """Start counting requests, connections and bytes afresh (between benchmark rounds)."""

        def reset() -> None:
            self._seen.clear()
            self.connections = 0
            self.sent = 0

        self._loop.call_soon_threadsafe(reset)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(timeout=10)

    def start(self) -> ThrottledRelay:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.address = future.result(timeout=10)
        return self

    async def _serve(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
        self.connections += 1
        if self._delay:
            await asyncio.sleep(self._delay)
        try:
            if self._upstream.startswith("unix://"):
                up_r, up_w = await asyncio.open_unix_connection(self._upstream[len("unix://") :])
            else:
                host, _, port = self._upstream.rpartition(":")
                up_r, up_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, up_w))
        requests = _RequestReader(self._seen)
        upstream = (
            self._delayed(client_r, up_w, requests)
            if self._delay
            else self._forward(client_r, up_w, requests)
        )
        with contextlib.suppress(asyncio.CancelledError):  # the relay stops: so does this
            await asyncio.gather(upstream, self._downstream(up_r, client_w), return_exceptions=True)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: _RequestReader
    ) -> None:
        try:
            while data := await reader.read(65536):
                requests.feed(data)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Upstream -> client under both caps: the link's turn first, then the connection's
        own pace (``rate``), in chunks of a twentieth of a second or less of either."""
        rate, link = self._rate, self._link
        caps = [cap for cap in (rate, link.total if link else None) if cap]
        chunk = max(1024, min(caps) // 20) if caps else 65536
        try:
            while data := await reader.read(chunk):
                if link is not None:
                    await link.take(len(data))
                writer.write(data)
                self.sent += len(data)
                await writer.drain()
                if rate:
                    await asyncio.sleep(len(data) / rate)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _delayed(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: _RequestReader
    ) -> None:
        """A delay line: each chunk is sent ``delay`` after it arrived, in order."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await line.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                requests.feed(data)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(65536):
                line.put_nowait((loop.time() + self._delay, data))
            line.put_nowait((0.0, b""))
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    def cut(self) -> None:
        """Stop accepting and reset every open connection."""

        async def cut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._relays):  # open connections end with the relay
                task.cancel()
            await asyncio.gather(*self._relays, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@contextlib.contextmanager
def throttled(
    upstream: str, rate: int | None, delay: float = 0.0, *, total: int | None = None
) -> Iterator[ThrottledRelay]:
    relay = ThrottledRelay(upstream, rate, delay, total=total).start()
    try:
        yield relay
    finally:
        relay.stop()
