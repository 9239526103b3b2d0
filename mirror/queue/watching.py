"""Watches on the PostgreSQL queue (issues 15 and 16): workers check, the front posts.

With a PostgreSQL ``MIRROR_DB`` the upstream checks leave the front: they are one
procrastinate periodic task, deferred once per tick however many workers run (the database
dedups periodic deferrals; a ``queueing_lock`` keeps a slow pass from piling up behind it).
The pass is :meth:`mirror.watches.Watcher.check_due`, with a ``fire`` that hands what moved
to the front: a row of ``watch_fires`` (a store migration), then a ``NOTIFY``. The front
reads those rows when notified and every :data:`POLL_SECONDS` (a front that was down finds
them at its start), starts each job the usual way, and deletes the rows it handled; a
row whose job could not start waits ``MIRROR_WATCH_INTERVAL`` before the next try.

The tick is the floor of the interval: the largest of :data:`TICKS` not over
``MIRROR_WATCH_INTERVAL`` (1 s to 30 s), else one minute, so a watch is checked at the first
tick after it is due.

This module knows no chat: the front's ``fire`` is the bot's, as for the in-process Watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import procrastinate
import psycopg

from mirror.errors import MirrorError
from mirror.models import Watch
from mirror.queue.app import DOWN, POLL_SECONDS, listen, pool_of
from mirror.store import Store, StoreError
from mirror.text import Text, text_of
from mirror.watches import Fire, Watcher

log = logging.getLogger(__name__)

WATCH_TASK = "mirror.check_watches"
WATCH_QUEUE = "watches"
WATCH_CHANNEL = "mirror_watches"
TICKS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
"""Seconds that divide a minute, so a cron seconds field ``*/N`` ticks evenly."""
_FRONT_LOCK = 0x77617463686573  # one front at a time posts what moved
FAILED = Text("The check failed; the bot's log has the details.")


def tick_of(interval: float) -> int:
    """The periodic task's tick, in seconds, for ``MIRROR_WATCH_INTERVAL``."""
    if interval >= 60:
        return 60
    return max((tick for tick in TICKS if tick <= interval), default=1)


def cron_of(tick: int) -> str:
    """procrastinate's cron; its optional sixth field is the seconds."""
    return "* * * * *" if tick == 60 else f"* * * * * */{tick}"


def add_watch_check(app: procrastinate.App, interval: float) -> None:
    """Register the periodic pass over due watches (a worker's app only: workers defer it)."""

    @app.periodic(cron=cron_of(tick_of(interval)), periodic_id="watches")
    @app.task(
        name=WATCH_TASK,
        queue=WATCH_QUEUE,
        pass_context=True,
        lock=WATCH_TASK,
        queueing_lock=WATCH_TASK,
    )
    async def check_watches(context: procrastinate.JobContext, timestamp: int) -> None:
        watcher: Watcher = context.additional_context["watcher"]
        try:
            await watcher.check_due()
        except StoreError as exc:  # the next tick tries again
            log.error("watches: the store failed: %s", exc.__cause__ or exc)


def hand_over(connector: procrastinate.PsycopgConnector) -> Fire:
    """The workers' ``fire``: store what moved for the front, then tell it. Stored is
    handed over, so the watch then remembers what it saw."""

    async def fire(watch: Watch, tags: list[str]) -> None:
        await connector.execute_query_async(
            "INSERT INTO watch_fires (watch_id, tag, seen) "
            "SELECT %(watch)s, tag, %(now)s FROM unnest(%(tags)s::text[]) AS tag "
            "ON CONFLICT (watch_id, tag) DO UPDATE SET seen = excluded.seen",
            watch=watch.id,
            tags=tags,
            now=time.time(),
        )
        await connector.execute_query_async(
            "SELECT pg_notify(%(channel)s, %(watch)s)", channel=WATCH_CHANNEL, watch=watch.id
        )
        log.info("watch %s: %s moved; handed to the front", watch.id, ", ".join(tags))

    return fire


class FiredWatches:
    """The front's side: mirror and post what the workers saw move, once each. A sighting
    whose copy could not start (the chat out of reach, the policy changed) stays stored and
    is tried again ``retry_after`` seconds later, never sooner. Its connections (the LISTEN,
    and one per pass that holds the posting lock) are borrowed from the store's pool."""

    def __init__(self, store: Store, fire: Fire, *, retry_after: float) -> None:
        self._store = store
        self._pool = pool_of(store)
        self._fire = fire
        self._retry_after = retry_after
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Post what moved, when told and every :data:`POLL_SECONDS`; until cancelled."""
        listener = asyncio.create_task(
            listen(
                self._pool,
                WATCH_CHANNEL,
                connected=self._wake.set,
                heard=lambda _: self._wake.set(),
            ),
            name="watch-fires-listener",
        )
        try:
            while True:
                self._wake.clear()
                try:
                    await self.handle_pending()
                except (*DOWN, StoreError) as exc:  # the rows stay for the next pass
                    log.warning("watches: what moved is not handled now (%s)", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._wake.wait()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def handle_pending(self) -> int:
        """Start a job for every stored sighting that is due; how many watches fired. One
        front at a time does this, under a session's advisory lock: the connection is held
        for the pass and given back unlocked (or closed, when the unlock failed, so the lock
        ends with its session)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_FRONT_LOCK,))
            locked = await cursor.fetchone()
            if not (locked and locked[0]):
                return 0  # another front is posting them
            try:
                return await self._handle(conn)
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (_FRONT_LOCK,))
                except BaseException:
                    await conn.close()
                    raise

    async def _handle(self, conn: psycopg.AsyncConnection[Any]) -> int:
        cursor = await conn.execute(
            "SELECT watch_id, tag, seen FROM watch_fires WHERE not_before <= %s ORDER BY seen",
            (time.time(),),
        )
        pending: defaultdict[str, dict[str, float]] = defaultdict(dict)
        for watch_id, tag, seen in await cursor.fetchall():
            pending[str(watch_id)][str(tag)] = float(seen)
        started = 0
        for watch_id, seen in pending.items():
            tags = list(seen)
            if await self._one(watch_id, tags):
                started += 1
                await conn.execute(
                    "DELETE FROM watch_fires WHERE watch_id = %s AND tag = ANY(%s) AND seen <= %s",
                    (watch_id, tags, max(seen.values())),
                )
            else:
                await conn.execute(
                    "UPDATE watch_fires SET not_before = %s WHERE watch_id = %s AND tag = ANY(%s)",
                    (time.time() + self._retry_after, watch_id, tags),
                )
        return started

    async def _one(self, watch_id: str, tags: list[str]) -> bool:
        """Mirror and post one watch's sighting; False to try it again later."""
        watch = await self._store.get_watch(watch_id)
        if watch is None or watch.reply_ref is None:
            return True  # stopped since: its sightings go with it
        try:
            await self._fire(watch, tags)
            return True
        except MirrorError as exc:
            log.warning("watch %s: %s", watch.id, exc)
            watch.error = text_of(exc)
        except Exception:
            log.exception("watch %s: mirroring what moved failed", watch.id)
            watch.error = FAILED
        try:  # shown by /watches (until a later check goes well)
            await self._store.save_watch_check(watch)
        except StoreError as exc:
            log.error("watch %s: the store failed: %s", watch.id, exc.__cause__ or exc)
        return False
