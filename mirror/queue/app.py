"""The copy queue's procrastinate app, on the store's pool: names, schema, census, LISTEN.

One pool per process: :func:`open_queue` opens procrastinate's connector on the pool of the
PostgreSQL store (:mod:`mirror.store.postgres`), and everything else here borrows a connection
from that pool for as long as it needs one (the schema's advisory lock, a LISTEN loop).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import procrastinate
import psycopg
import tenacity
from procrastinate.exceptions import ConnectorException

from mirror.queue.codec import request_of
from mirror.store import Store, StoreError
from mirror.text import Text

if TYPE_CHECKING:
    from mirror.queue.worker import QueueWorker
    from mirror.store.postgres import Pool

COPY_TASK = "mirror.copy"
QUEUE = "copies"
CHANNEL = "mirror_copies"
PROGRESS_EVERY = 0.5
POLL_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0
STALLED_AFTER_SECONDS = 30.0
STALLED_SCAN_SECONDS = 5.0
_SCHEMA_LOCK = 0x717565756531  # one process applies procrastinate's schema at a time
DOWN = (psycopg.Error, ConnectorException)  # procrastinate wraps psycopg's errors in its own

QUEUE_DOWN = Text("The copy queue (PostgreSQL) is unavailable right now; try again shortly.")


@dataclass(frozen=True)
class Queue:
    """The copy queue as one process holds it: procrastinate's app and connector, open on
    ``pool``, the store's."""

    app: procrastinate.App
    connector: procrastinate.PsycopgConnector
    pool: Pool


def pool_of(store: Store) -> Pool:
    """The PostgreSQL store's pool, which the queue shares."""
    from mirror.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        raise TypeError("the copy queue lives in a PostgreSQL store")
    return store.pool


def make_app() -> procrastinate.App:
    """The queue's app and its one task, the copy; its connector gets a pool when opened."""
    connector = procrastinate.PsycopgConnector()
    app = procrastinate.App(connector=connector)

    @app.task(name=COPY_TASK, queue=QUEUE, pass_context=True)
    async def copy(
        context: procrastinate.JobContext,
        source: str,
        target: str,
        platform: str,
        max_bytes: int | None,
    ) -> None:
        worker: QueueWorker = context.additional_context["worker"]
        assert context.job.id is not None
        await worker.run(context.job.id, request_of(source, target, platform, max_bytes))

    return app


@contextlib.asynccontextmanager
async def open_queue(store: Store) -> AsyncIterator[Queue]:
    """The queue on ``store``'s pool, its schema created if this is the first process to
    use the database; the pool stays the store's to close."""
    pool = pool_of(store)
    app = make_app()
    connector = app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    async with app.open_async(pool):
        await _prepare(app, pool)
        yield Queue(app, connector, pool)


async def _prepare(app: procrastinate.App, pool: Pool) -> None:
    """Create procrastinate's tables once per database (front and workers all call this)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cursor.fetchone()
        if not (row and row[0]):
            await conn.execute(app.schema_manager.get_schema().encode())


@dataclass(frozen=True)
class Census:
    workers: int
    """Workers that beat within the stalled-after time."""
    waiting: int
    running: int


async def census(store: Store, *, stalled_after: float = STALLED_AFTER_SECONDS) -> Census:
    """Who works and what waits (``mirror-bot check``): a front without workers would queue
    copies that nobody runs. Reads only: a database no worker has used yet has no queue."""
    try:
        async with pool_of(store).connection() as conn:
            cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cursor.fetchone()
            if not (row and row[0]):
                return Census(0, 0, 0)
            cursor = await conn.execute(
                "SELECT (SELECT COUNT(*) FROM procrastinate_workers WHERE last_heartbeat > "
                "NOW() - make_interval(secs => %s)), "
                "COUNT(*) FILTER (WHERE status = 'todo'), COUNT(*) FILTER (WHERE status = 'doing') "
                "FROM procrastinate_jobs WHERE task_name = %s",
                (stalled_after, COPY_TASK),
            )
            workers, waiting, running = await cursor.fetchone() or (0, 0, 0)
    except psycopg.Error as exc:
        raise StoreError(QUEUE_DOWN) from exc
    return Census(int(workers), int(waiting), int(running))


async def listen(
    pool: Pool, channel: str, *, connected: Callable[[], None], heard: Callable[[str], None]
) -> None:
    """LISTEN on ``channel`` for ever, on a connection borrowed from ``pool``. A lost
    connection comes back with backoff, and ``connected`` runs after every (re)connect: what
    was said meanwhile was not heard, so the listener looks at the stored state again."""
    log = logging.getLogger(__name__)
    async for attempt in tenacity.AsyncRetrying(
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        retry=tenacity.retry_if_exception_type(psycopg.Error),
        before_sleep=lambda state: log.warning(
            "%s: listening again after %s", channel, state.outcome and state.outcome.exception()
        ),
    ):
        with attempt:
            async with pool.connection() as conn, _listening(conn, channel) as notices:
                connected()
                async for notice in notices:
                    heard(notice.payload)


@contextlib.asynccontextmanager
async def _listening(
    conn: psycopg.AsyncConnection[Any], channel: str
) -> AsyncIterator[AsyncIterator[psycopg.Notify]]:
    """The notifications on ``channel``; the connection goes back to the pool as it came, not
    listening and with nothing heard left behind (psycopg keeps what arrives between reads)."""
    await conn.execute(f"LISTEN {channel}")
    try:
        async with contextlib.aclosing(conn.notifies()) as notices:
            yield notices
    finally:
        with contextlib.suppress(psycopg.Error):  # a broken connection: the pool drops it
            await conn.execute(f"UNLISTEN {channel}")
            async for _ in conn.notifies(timeout=0):
                pass
