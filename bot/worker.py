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

from bot.logs import configure_logging
from bot.runtime import Role, open_runtime
from bot.settings import Settings
from mirror.watches import RegistryUpstream


async def work(settings: Settings, *, heartbeat: float, stalled_after: float) -> int:
    """Open the worker's runtime (a local deployment has no queue: one sentence, exit 2)
    and take copies with its job service's copier, the engines of this process."""
    configure_logging(
        settings.secrets(),
        level=settings.mirror_log_level or logging.INFO,
        fmt=settings.mirror_log_format,
    )
    async with open_runtime(settings, role=Role.WORKER) as runtime:
        from mirror.queue.worker import work as work_queue  # procrastinate only for a worker

        assert runtime.queue is not None  # a worker's runtime has one, or it did not open
        await work_queue(
            runtime.queue,
            runtime.service.copier,
            concurrency=settings.mirror_concurrency,
            store=runtime.store,
            upstream=RegistryUpstream(runtime.service.engines),
            watch_interval=settings.mirror_watch_interval,
            name=f"{socket.gethostname()}:{os.getpid()}",
            heartbeat=heartbeat,
            stalled_after=stalled_after,
        )
    return 0
