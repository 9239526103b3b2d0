"""The store on one SQLite file (the default ``MIRROR_DB``): one connection, WAL, and writes
that take the file's lock up front so "busy" comes before any change."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from mirror.store.interface import StoreError, StoreUnusable
from mirror.store.schema import MIGRATIONS, SCHEMA_VERSION, check_not_newer
from mirror.store.sql import Row, SQLStore

BUSY_TIMEOUT_SECONDS = 3.0


class _Writer:
    """The statements of the one transaction open on the connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Inside the transaction, whose lock it already holds."""
        cursor = await self._db.execute(sql, params)
        return [tuple(row) for row in await cursor.fetchall()]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql, params)
        return cursor.rowcount


class SQLiteDatabase:
    """One connection shared by every coroutine of the process. A transaction on it is seen
    by every statement on it, so reads take the same lock as transactions: a read never sees
    another coroutine's writes before they are committed (nor after they are rolled back)."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # one connection: one transaction, or one read, at a time
        self._held: dict[str, asyncio.Lock] = {}

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            return [tuple(row) for row in await cursor.fetchall()]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Writer]:
        async with self._lock, _transaction(self._db):
            yield _Writer(self._db)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """One process uses a SQLite file: held unless this process already holds it."""
        lock = self._held.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True

    async def close(self) -> None:
        await self._db.close()


async def open_sqlite(path: Path | str) -> SQLStore:
    where = str(path)
    if where != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(
                f"MIRROR_DB: cannot create the directory `{Path(path).parent}` for the "
                f"database ({exc.strerror or exc}); point MIRROR_DB at a writable place."
            ) from None
    try:
        # A locked database answers with an error within seconds instead of hanging a chat.
        # Autocommit: writes take their lock up front with BEGIN IMMEDIATE (_transaction).
        db = await aiosqlite.connect(where, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise _open_failure(where, exc) from None
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await _migrate(db)
    except BaseException as exc:
        await db.close()  # its worker thread would keep the process alive
        if isinstance(exc, sqlite3.Error):
            raise _open_failure(where, exc) from None
        raise
    return SQLStore(SQLiteDatabase(db))


@contextlib.asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """All or nothing; the write lock is taken first, so "busy" comes before any change."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


async def _user_version(db: aiosqlite.Connection) -> int:
    cursor = await db.execute("PRAGMA user_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction (all steps or none)."""
    if await _user_version(db) == SCHEMA_VERSION:
        return
    async with _transaction(db):
        version = await _user_version(db)  # again, under the lock: another process may have won
        check_not_newer(version)
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number].sqlite:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number + 1}")


def _open_failure(where: str, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return StoreError(
            f"MIRROR_DB: `{where}` stayed locked by another process for "
            f"{BUSY_TIMEOUT_SECONDS:.0f} s; try again when it lets go."
        )
    if name == "SQLITE_NOTADB":
        return StoreUnusable(
            f"MIRROR_DB: `{where}` is not a SQLite database; point MIRROR_DB at this bot's "
            "database or at a new file."
        )
    return StoreUnusable(f"MIRROR_DB: cannot use `{where}` as the bot's database ({exc}).")
