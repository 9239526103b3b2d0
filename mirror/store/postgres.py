"""The store on PostgreSQL (``MIRROR_DB=postgresql://…``), for a bot whose copies run on
several machines (issue 16): psycopg 3 through an async connection pool.

The pool is the process's only one: the copy queue (:mod:`mirror.queue.app`) opens
procrastinate's connector on it and borrows its connections for LISTEN and advisory locks, so
every PostgreSQL connection of a front or a worker comes from here (procrastinate's worker
adds one of its own for its LISTEN). The pool checks a connection before handing it out and
replaces broken ones in the background with backoff, so a server restart during a run costs
the calls made while it is down (each one sentence, :data:`STORE_DOWN`), not the process. A
server that cannot be reached at start is a configuration error: one sentence naming
``MIRROR_DB``, and the bot exits 2.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mirror.store.interface import StoreUnusable
from mirror.store.schema import MIGRATIONS, SCHEMA_VERSION, check_not_newer
from mirror.store.sql import Row, SQLStore, Writer

CONNECT_TIMEOUT_SECONDS = 5
WAIT_SECONDS = 5.0
"""How long a call waits for a connection before it answers "unavailable" to the chat."""
POOL_SIZE = 12
"""The store's calls and the queue's share it; a front holds two for as long as it runs (its
LISTENs for copies and for watches) and a third while it posts what watches saw move."""
Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]
_MIGRATION_LOCK = 0x6D6972726F72  # "mirror": one process upgrades the schema at a time


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared SQL's ``?`` as psycopg's ``%s`` (and a literal ``%`` kept literal)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Transaction:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(_placeholders(sql), params)
        return cursor.rowcount

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._conn.execute(_placeholders(sql), params)
        return await cursor.fetchall()


class PostgresDatabase:
    errors: tuple[type[Exception], ...] = (psycopg.Error, PoolTimeout)

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(_placeholders(sql), params)
            return await cursor.fetchall()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        async with self.pool.connection() as conn, conn.transaction():
            yield _Transaction(conn)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """A session's advisory lock on a connection borrowed from the pool for the block
        (``pg_try_advisory_lock``: a process that does not get it goes on without). The
        connection goes back unlocked, or closed when the unlock failed, so that the lock
        ends with its session."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,))
            row = await cursor.fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
                    except BaseException:
                        await conn.close()
                        raise

    async def close(self) -> None:
        await self.pool.close()


def describe_location(dsn: str) -> str:
    """``host:port/database``: where ``MIRROR_DB`` points, without its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the server MIRROR_DB names"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


def _reason(exc: psycopg.Error) -> str:
    """The server's or the socket's own words: "Connection refused", "password
    authentication failed for user …", without the connection string around them."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()


class PostgresStore(SQLStore):
    """The store on PostgreSQL, whose pool the copy queue shares."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(db)
        self.pool = db.pool

    async def _announce(self, tx: Writer, channel: str, payload: str) -> None:
        await tx.execute("SELECT pg_notify(?, ?)", (channel, payload))


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    """Each statement commits by itself unless a transaction is opened. Set per connection,
    not in the pool's connection arguments: procrastinate opens its LISTEN connection with
    those arguments and ``autocommit=True`` of its own, and a second one would be refused."""
    await conn.set_autocommit(True)


async def open_postgres(dsn: str) -> PostgresStore:
    """The schema upgraded on a connection of its own (whose failure says why the server
    cannot be used), then the pool every later call borrows from."""
    where = describe_location(dsn)
    unreachable = (
        f"MIRROR_DB: cannot connect to PostgreSQL at {where} ({{reason}}); start it or point "
        "MIRROR_DB at a server this bot can reach."
    )
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.Error as exc:
        raise StoreUnusable(unreachable.format(reason=_reason(exc))) from None
    try:
        async with conn:
            await _migrate(conn)
    except psycopg.Error as exc:
        raise StoreUnusable(
            f"MIRROR_DB: cannot use {where} as the bot's database ({_reason(exc)})."
        ) from None
    pool: Pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=POOL_SIZE,
        open=False,
        timeout=WAIT_SECONDS,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        configure=_autocommit,
        check=AsyncConnectionPool.check_connection,
        name="mirror-store",
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
    except PoolTimeout:
        await pool.close()
        raise StoreUnusable(unreachable.format(reason="no connection in time")) from None
    return PostgresStore(PostgresDatabase(pool))


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction (PostgreSQL's DDL is
    transactional), under a lock so two processes starting together upgrade it once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cursor = await conn.execute("SELECT version FROM schema_version")
        row = await cursor.fetchone()
        if row is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = int(row[0]) if row else 0
        check_not_newer(version)
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number].postgres:
                await conn.execute(statement)
        await conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
