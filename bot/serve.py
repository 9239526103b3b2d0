"""``mirror-bot run``: adapters, recovery of interrupted jobs, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.app import MirrorBot
from bot.health import make_app, start_server
from bot.logs import configure_logging
from bot.metrics import METRICS
from bot.plugins import configured_adapters
from bot.runtime import open_runtime
from bot.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> int:
    configured = configured_adapters()
    # Only the fallback (the console) runs: its screen would be cluttered by INFO lines.
    quiet = all(entry.fallback for entry in configured)
    secrets = [s for entry in configured for s in entry.setup.secrets()]
    configure_logging(
        [*settings.secrets(), *secrets],
        level=settings.mirror_log_level or (logging.WARNING if quiet else logging.INFO),
        fmt=settings.mirror_log_format,
    )
    adapters = {entry.name: entry.setup.build() for entry in configured}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, on_outcome=METRICS.observe_outcome) as runtime:
        METRICS.watch_queue(lambda: runtime.service.in_flight)
        http = None
        if settings.mirror_metrics_port is not None:
            http = await start_server(
                make_app(METRICS, runtime.store, runtime.service.engines),
                settings.mirror_metrics_listen,
                settings.mirror_metrics_port,
            )
        bot = MirrorBot(
            settings, runtime.service, runtime.policy, runtime.planner, runtime.render_options
        )
        resumed = await bot.recover(adapters)
        if resumed:
            log.warning("resumed %d job(s) interrupted by a restart", resumed)
        serving = [
            asyncio.create_task(adapter.serve(bot.handle), name=f"adapter-{name}")
            for name, adapter in adapters.items()
        ]
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stopping not in done:
            # An adapter ended on its own (the console at end of input): finish what runs.
            for task in done:
                task.result()
            await bot.drain(stop)
        for task in [*serving, stopping]:
            task.cancel()
        for task in serving:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bot.aclose()
        if http is not None:
            await http.cleanup()
    return 0
