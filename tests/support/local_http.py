"""Serving an aiohttp app on a free loopback port: the fake chat APIs, proxies, token server."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from aiohttp import web


async def serve_locally(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1 and a port the OS picks; the caller cleans the runner up."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


class ThreadedServer:
    """A fake platform's HTTP and WebSocket API on a loop and thread of its own.

    The chat SDKs under test block (lark-oapi, dingtalk-stream) or run their own loops, and the
    tests read the fake's records from plain threads, so the fake cannot share the test's loop.
    A subclass adds its routes in :meth:`routes` and keeps the WebSockets it accepts in
    ``_sockets`` (closed first on :meth:`stop`, so a client sees a clean close, not a reset).
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.url = ""

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _serve(self) -> int:
        app = web.Application()
        self.routes(app)
        self._runner, port = await serve_locally(app, access_log=None)
        return port

    def stop(self) -> None:
        async def _stop() -> None:
            for ws in self._sockets:
                await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
