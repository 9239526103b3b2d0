"""``mirror-bot worker``: copies taken from the PostgreSQL queue with this machine's engines.

Run any number, on any machine that reaches PostgreSQL, the sources and the target (near the
sources is where copies are fastest); ``mirror-bot run`` is then the chat front only, and the
workers check the watches too (with their own ``MIRROR_WATCH_INTERVAL``). A worker stops on
SIGTERM or SIGINT once its running copies are done; one killed outright leaves its copies to
the others (:mod:`mirror.queue.worker`).
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import AsyncExitStack

from bot.chat import ConfigurationError
from bot.logs import configure_logging
from bot.policy import Policy
from bot.runtime import LazyLookups, build_engines
from bot.settings import Settings
from mirror.copier import LocalCopier
from mirror.store import is_postgres, open_store
from mirror.watches import RegistryUpstream

NEEDS_POSTGRES = (
    "MIRROR_DB: `mirror-bot worker` takes its copies from a PostgreSQL queue; set MIRROR_DB "
    "to the postgresql:// URL the chat front uses."
)


async def work(settings: Settings, *, heartbeat: float, stalled_after: float) -> int:
    configure_logging(
        settings.secrets(),
        level=settings.mirror_log_level or logging.INFO,
        fmt=settings.mirror_log_format,
    )
    if not is_postgres(settings.mirror_db):
        raise ConfigurationError(NEEDS_POSTGRES)
    from mirror.queue.worker import work as work_queue  # procrastinate only for a worker

    async with AsyncExitStack() as stack:
        store = await open_store(settings.mirror_db)
        stack.push_async_callback(store.close)
        engines = build_engines(settings)
        stack.push_async_callback(engines.aclose)
        lookups = LazyLookups(settings, Policy(settings), engines.remote)
        copier = LocalCopier(
            store, engines, concurrency=settings.mirror_concurrency, advisor=lookups
        )
        await work_queue(
            str(settings.mirror_db),
            copier,
            concurrency=settings.mirror_concurrency,
            store=store,
            upstream=RegistryUpstream(engines),
            watch_interval=settings.mirror_watch_interval,
            name=f"{socket.gethostname()}:{os.getpid()}",
            heartbeat=heartbeat,
            stalled_after=stalled_after,
        )
    return 0
