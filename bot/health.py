"""The HTTP side of ``mirror-bot run``: ``/metrics`` for Prometheus and ``/healthz``.

``/healthz`` answers 200 only when the store answers and at least one engine can work, else
503 with a JSON body naming the part that failed, so a container runtime restarts a bot that
cannot do its job and an operator sees why.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.chat import ConfigurationError
from bot.metrics import Metrics
from mirror.engines.chooser import EngineChooser
from mirror.store import Store, StoreError

log = logging.getLogger(__name__)


async def health(store: Store, engines: EngineChooser) -> tuple[bool, dict[str, Any]]:
    """Whether the bot can work, and a report saying which part cannot."""
    report: dict[str, Any] = {}
    try:
        await store.ping()
        report["store"] = "ok"
    except StoreError as exc:
        report["store"] = f"failed: {exc.__cause__ or exc}"
    tried = await engines.health()
    report["engines"] = {name: reason or "ok" for name, reason in tried.items()}
    healthy = report["store"] == "ok" and any(reason is None for reason in tried.values())
    report["status"] = "ok" if healthy else "failing"
    return healthy, report


def make_app(metrics: Metrics, store: Store, engines: EngineChooser) -> web.Application:
    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        healthy, report = await health(store, engines)
        if not healthy:
            log.warning("health check failing: %s", report)
        return web.json_response(report, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen, or stop the bot with one sentence (a port in use is a configuration error)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(
            f"Cannot serve metrics on {host}:{port} "
            f"({os.strerror(exc.errno) if exc.errno else exc}); choose another "
            "MIRROR_METRICS_PORT or MIRROR_METRICS_LISTEN."
        ) from None
    log.info("metrics and health on http://%s:%d/metrics and /healthz", host, port)
    return runner
