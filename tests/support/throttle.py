"""A bandwidth-limited TCP relay, so a copy lasts long enough to be interrupted on purpose, and
a long link for the copy benchmark's WAN mode (a delay per request, a rate per connection)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class ThrottledRelay:
    """Relays 127.0.0.1:port -> upstream (``host:port`` or ``unix:///path``), sending
    downstream at most ``rate`` bytes/s per connection (None: as fast as it comes); :meth:`cut`
    drops every connection at once, as a daemon or registry that goes away would.

    ``delay`` (seconds) is a long link's round trip: a new connection waits it once (the TCP
    handshake) and every byte the client sends reaches the upstream that much later (so each
    request waits it), without delaying bytes sent together more than once.
    """

    def __init__(self, upstream: str, rate: int | None, delay: float = 0.0) -> None:
        self._upstream = upstream
        self._rate = rate
        self._delay = delay
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.address = ""

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
        upstream = (
            self._delayed(client_r, up_w)
            if self._delay
            else self._pipe(client_r, up_w, limit=False)
        )
        await asyncio.gather(
            upstream,
            self._pipe(up_r, client_w, limit=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, limit: bool
    ) -> None:
        rate = self._rate if limit else None
        chunk = max(1024, rate // 20) if rate else 65536
        try:
            while data := await reader.read(chunk):
                writer.write(data)
                await writer.drain()
                if rate:
                    await asyncio.sleep(len(data) / rate)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A delay line: each chunk is sent ``delay`` after it arrived, in order."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await line.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
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
def throttled(upstream: str, rate: int | None, delay: float = 0.0) -> Iterator[ThrottledRelay]:
    relay = ThrottledRelay(upstream, rate, delay).start()
    try:
        yield relay
    finally:
        relay.stop()
