"""``mirror-bot run``: adapters, recovery of interrupted jobs, and a clean stop on SIGTERM.

Every part is opened in an ``async with`` so it is closed in reverse order however ``run``
ends: SIGTERM, the console's end of input, an adapter failing, or start-up failing half-way
(a port in use, a chat token refused).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from bot.app import MirrorBot
from bot.approvals import check_admin_chat
from bot.chat import ChatAdapter
from bot.health import make_app, start_server
from bot.logs import configure_logging
from bot.metrics import METRICS
from bot.plugins import configured_adapters
from bot.runtime import Deployment, Role, Runtime, open_runtime
from bot.settings import Settings
from mirror.tasks import TaskSet
from mirror.watches import RegistryUpstream

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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        open_runtime(
            settings, on_outcome=METRICS.observe_outcome, asks=True, role=Role.FRONT
        ) as runtime,
        _metrics_server(runtime),
    ):
        # Built once the store and the port are open, so those are named before a missing chat.
        adapters = {entry.name: entry.setup.build() for entry in configured}
        check_admin_chat(settings, adapters)
        async with MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            runtime.lookups,
        ) as bot:
            resumed = await bot.recover(adapters)
            if resumed:
                log.warning("resumed %d job(s) interrupted by a restart", resumed)
            await bot.start_approvals(adapters, runtime.queue.pool if runtime.queue else None)
            if runtime.deployment is Deployment.QUEUE:  # the workers check; this front posts
                bot.follow_fired_watches(adapters)
            else:
                bot.start_watching(adapters, RegistryUpstream(runtime.service.engines))
            async with _chores(runtime):
                await _serve_until_stopped(bot, adapters, stop)
    return 0


@asynccontextmanager
async def _chores(runtime: Runtime) -> AsyncIterator[None]:
    """What runs beside the chat, in one place however many fronts share a PostgreSQL store
    (each takes the store's lock first): the webhook sender (MIRROR_WEBHOOK_URL) and the
    daily prune (MIRROR_RETENTION)."""
    settings = runtime.settings
    chores = TaskSet("chores")
    if settings.mirror_webhook_url and settings.mirror_webhook_secret:
        from mirror.webhooks import WebhookSender

        secret = settings.mirror_webhook_secret.get_secret_value()
        sender = WebhookSender(runtime.store, settings.mirror_webhook_url, secret)
        chores.spawn(sender.run(), name="webhooks")
    if settings.mirror_retention is not None:
        from mirror.retention import prune_daily

        client = runtime.service.engines.remote.client
        chores.spawn(
            prune_daily(runtime.store, client, settings.mirror_retention), name="retention"
        )
    try:
        yield
    finally:
        await chores.aclose()


async def _serve_until_stopped(
    bot: MirrorBot, adapters: Mapping[str, ChatAdapter], stop: asyncio.Event
) -> None:
    """Serve until a signal, or until an adapter ends (the console at end of input).

    An adapter that fails ends the others (the TaskGroup cancels them) and its error reaches
    the caller as itself, not as a group; one that ends on its own lets running jobs finish.
    """
    try:
        async with asyncio.TaskGroup() as group:
            serving = [
                group.create_task(adapter.serve(bot.handle), name=f"adapter-{name}")
                for name, adapter in adapters.items()
            ]
            stopping = group.create_task(stop.wait(), name="stop")
            await asyncio.wait([*serving, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not stopping.done():
                await bot.drain(stop)
            for task in [*serving, stopping]:
                task.cancel()
    except BaseExceptionGroup as failed:
        if len(failed.exceptions) == 1:
            raise failed.exceptions[0] from None
        raise


@asynccontextmanager
async def _metrics_server(runtime: Runtime) -> AsyncIterator[None]:
    settings = runtime.settings
    METRICS.watch_queue(lambda: runtime.service.in_flight)
    if settings.mirror_metrics_port is None:
        yield
        return
    http = await start_server(
        make_app(METRICS, runtime.store, runtime.service.engines),
        settings.mirror_metrics_listen,
        settings.mirror_metrics_port,
    )
    try:
        yield
    finally:
        await http.cleanup()
