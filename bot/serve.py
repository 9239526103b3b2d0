"""``mirror-bot run``: adapters, recovery of interrupted jobs, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.app import MirrorBot
from bot.logs import configure_logging
from bot.plugins import configured_adapters, load_adapter
from bot.runtime import open_runtime
from bot.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> int:
    names = configured_adapters(settings)
    console_only = names == ["console"]
    configure_logging(settings.secrets(), level=logging.WARNING if console_only else logging.INFO)
    adapters = {name: load_adapter(name, settings) for name in names}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings) as runtime:
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
    return 0
