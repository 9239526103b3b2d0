"""The job store: jobs, per-image results and history, surviving restarts.

Every state change of an item is written before it is announced, and a job is written before
anyone is told it exists, so a crash never loses a job: on start the bot finds the unfinished
ones here and resumes or fails them.

:class:`Store` is the interface the rest of the bot uses; :class:`SQLiteStore` implements it
on one file. Nothing outside this module sees a database type: every database failure is a
:class:`StoreError` whose text is one sentence, so another store (PostgreSQL, issue 16) can
take its place behind :func:`open_store`.

The SQLite schema is versioned with ``PRAGMA user_version``: ``_MIGRATIONS[n]`` takes a
database from version ``n`` to ``n + 1``. Version 0 is a new file *or* one written before
versioning, which is why the first migration creates only what does not exist yet. Append
migrations; never edit one that has shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import aiosqlite

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.errors import MirrorError
from mirror.models import (
    UNFINISHED,
    Item,
    ItemStatus,
    Job,
    StoredAction,
    Watch,
    platform_text,
)
from mirror.platform import parse_platform
from mirror.reference import parse_reference
from mirror.text import Text

BUSY_TIMEOUT_SECONDS = 3.0

STORE_DOWN = Text("The bot's database is busy or unavailable (locked or full); try again shortly.")


class StoreError(MirrorError):
    """The store could not read or write right now; the cause is chained for the log."""


class StoreUnusable(StoreError):
    """``MIRROR_DB`` cannot be this bot's database (a configuration error, found at start)."""


class Store(Protocol):
    """What the bot keeps between restarts. Every method raises only :class:`StoreError`."""

    async def add_job(self, job: Job) -> None:
        """Write a new job and its items, all or nothing."""
        ...

    async def set_reply_ref(self, job: Job) -> None:
        """Write where the job's progress message is (``job.reply_ref``)."""
        ...

    async def save_item(self, job: Job, idx: int) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def recent_jobs(self, chat: str, limit: int = 10) -> list[Job]:
        """This chat's jobs, newest first."""
        ...

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs with an item still queued, running or waiting for a pull limit to lift,
        oldest first (for recovery; a waiting item keeps its ``not_before``)."""
        ...

    async def history(self, chat: str, limit: int = 20) -> list[Item]:
        """What this chat mirrored successfully, newest first, one row per target."""
        ...

    async def count_items_since(self, requester: str, since: float) -> int:
        """How many images ``requester`` asked for since ``since`` (for per-user rates)."""
        ...

    async def last_success(self, target: str) -> Item | None:
        """The newest successful copy to ``target``, from any chat."""
        ...

    async def add_actions(self, actions: Sequence[StoredAction]) -> None:
        """Write buttons before the message carrying them is sent; an id already stored keeps
        its first meaning (a view re-rendered on every edit stores the same buttons again)."""
        ...

    async def get_action(self, action_id: str) -> StoredAction | None: ...

    async def use_action(self, action_id: str) -> bool:
        """Mark a button pressed; False when it already was (two presses, one effect)."""
        ...

    async def first_notice(self, key: str) -> bool:
        """Record ``key``; True only the first time ever, so a warning is given once."""
        ...

    async def copies_of(self, source: str) -> list[tuple[Item, float]]:
        """Every target holding a copy of ``source``: its newest successful copy, and when
        the first one landed (``/inspect``: "mirrored here since"), newest first."""
        ...

    async def add_watch(self, watch: Watch) -> None:
        """Write a new watch (before the chat hears of it)."""
        ...

    async def set_watch_reply_ref(self, watch: Watch) -> None:
        """Write where the watch was announced (``watch.reply_ref``), to post there later."""
        ...

    async def save_watch_check(self, watch: Watch) -> None:
        """Write what the latest check found: digests, times, error."""
        ...

    async def get_watch(self, watch_id: str) -> Watch | None: ...

    async def watches(self, chat: str | None = None) -> list[Watch]:
        """This chat's watches (every chat's when None), oldest first."""
        ...

    async def delete_watch(self, watch_id: str) -> None: ...

    async def get_language(self, user: str) -> str | None:
        """The language ``user`` (``telegram:42``) chose with ``/mirror lang``, if any."""
        ...

    async def set_language(self, user: str, language: str | None) -> None:
        """Remember ``user``'s language; None forgets it (back to the client's)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers (for the health check)."""
        ...

    async def close(self) -> None: ...


async def open_store(location: Path | str) -> Store:
    """The store at ``location`` (``MIRROR_DB``), created or upgraded to the current schema.

    Raises :class:`StoreUnusable` when it cannot be this bot's database, :class:`StoreError`
    when it is only busy.
    """
    return await SQLiteStore.open(location)


# -- SQLite ------------------------------------------------------------------------------------

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the schema as first released, before it had a version.
    (
        """CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            requester TEXT NOT NULL,
            chat TEXT NOT NULL,
            created REAL NOT NULL,
            reply_ref TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_chat ON jobs (chat, created)",
        """CREATE TABLE IF NOT EXISTS items (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            idx INTEGER NOT NULL,
            spec TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            platform TEXT NOT NULL,
            status TEXT NOT NULL,
            engine TEXT,
            source_digest TEXT,
            target_digest TEXT,
            bytes INTEGER,
            seconds REAL,
            error TEXT,
            updated REAL NOT NULL,
            PRIMARY KEY (job_id, idx)
        )""",
        "CREATE INDEX IF NOT EXISTS items_target ON items (target, status)",
        "CREATE INDEX IF NOT EXISTS items_status ON items (status)",
    ),
    # 2: the per-user rate counts a requester's recent jobs on every /mirror.
    ("CREATE INDEX jobs_requester ON jobs (requester, created)",),
    # 3: what came along with an exact copy (JSON), and what was copied when not an image.
    ("ALTER TABLE items ADD COLUMN referrers TEXT", "ALTER TABLE items ADD COLUMN artifact TEXT"),
    # 4: buttons; the chat carries only the id (bot/actions.py).
    (
        """CREATE TABLE actions (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            chat TEXT NOT NULL,
            command TEXT NOT NULL,
            created REAL NOT NULL,
            used REAL
        )""",
    ),
    # 5: things said once ever (Docker Hub made a pushed repository public), by key.
    ("CREATE TABLE notices (key TEXT PRIMARY KEY, created REAL NOT NULL)",),
    # 6: watches (issue 15): an image or tag filter checked upstream on a schedule.
    (
        """CREATE TABLE watches (
            id TEXT PRIMARY KEY,
            requester TEXT NOT NULL,
            chat TEXT NOT NULL,
            image TEXT NOT NULL,
            pattern TEXT NOT NULL,
            platform TEXT NOT NULL,
            created REAL NOT NULL,
            reply_ref TEXT,
            next_check REAL NOT NULL,
            last_check REAL,
            digests TEXT NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX watches_chat ON watches (chat, created)",
    ),
    # 7: when a pull limit lifts, as time.time() seconds: a waiting item runs again then.
    ("ALTER TABLE items ADD COLUMN not_before REAL",),
    # 8: the language each person chose with `/mirror lang` (issue 17).
    (
        """CREATE TABLE user_languages (
            person TEXT PRIMARY KEY,
            language TEXT NOT NULL,
            updated REAL NOT NULL
        )""",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

_ITEM_COLUMNS = (
    "spec, source, target, platform, status, engine, source_digest, target_digest, "
    "bytes, seconds, error, referrers, artifact, not_before"
)

_Self = TypeVar("_Self", bound="SQLiteStore")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(
    method: Callable[Concatenate[_Self, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_Self, _P], Coroutine[Any, Any, _R]]:
    """Database failures leave this module as one sentence, the cause chained for the log."""

    @functools.wraps(method)
    async def guarded(self: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise StoreError(STORE_DOWN)
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(STORE_DOWN) from exc

    return guarded


class SQLiteStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._closed = False
        self._writing = asyncio.Lock()  # one connection: one transaction at a time

    @classmethod
    async def open(cls, path: Path | str) -> SQLiteStore:
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
        return cls(db)

    @_guarded
    async def ping(self) -> None:
        cursor = await self._db.execute("SELECT 1")
        await cursor.fetchone()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    @_guarded
    async def add_job(self, job: Job) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute(
                "INSERT INTO jobs (id, requester, chat, created, reply_ref) VALUES (?, ?, ?, ?, ?)",
                (job.id, job.requester, job.chat, job.created, job.reply_ref),
            )
            for idx, item in enumerate(job.items):
                await self._write_item(job.id, idx, item)

    @_guarded
    async def set_reply_ref(self, job: Job) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute(
                "UPDATE jobs SET reply_ref = ? WHERE id = ?", (job.reply_ref, job.id)
            )

    @_guarded
    async def save_item(self, job: Job, idx: int) -> None:
        async with self._writing, _transaction(self._db):
            await self._write_item(job.id, idx, job.items[idx])

    async def _write_item(self, job_id: str, idx: int, item: Item) -> None:
        await self._db.execute(
            f"INSERT OR REPLACE INTO items (job_id, idx, {_ITEM_COLUMNS}, updated) "
            f"VALUES ({', '.join('?' * 17)})",
            (
                job_id,
                idx,
                item.spec,
                str(item.source),
                str(item.target),
                platform_text(item.platform),
                item.status.value,
                item.engine,
                item.source_digest,
                item.target_digest,
                item.bytes,
                item.seconds,
                item.error,
                _referrers_text(item.referrers),
                item.artifact.value if item.artifact else None,
                item.not_before,
                time.time(),
            ),
        )

    @_guarded
    async def get_job(self, job_id: str) -> Job | None:
        jobs = await self._jobs("WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    @_guarded
    async def recent_jobs(self, chat: str, limit: int = 10) -> list[Job]:
        return await self._jobs("WHERE chat = ? ORDER BY created DESC LIMIT ?", (chat, limit))

    @_guarded
    async def unfinished_jobs(self) -> list[Job]:
        unfinished = sorted(status.value for status in UNFINISHED)
        marks = ", ".join("?" * len(unfinished))
        return await self._jobs(
            f"WHERE id IN (SELECT job_id FROM items WHERE status IN ({marks})) ORDER BY created",
            tuple(unfinished),
        )

    @_guarded
    async def history(self, chat: str, limit: int = 20) -> list[Item]:
        cursor = await self._db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE jobs.chat = ? AND items.status IN (?, ?) ORDER BY items.updated DESC LIMIT ?",
            (chat, ItemStatus.SUCCEEDED.value, ItemStatus.ALREADY_MIRRORED.value, limit * 4),
        )
        latest: dict[str, Item] = {}
        for row in await cursor.fetchall():
            item = _item(row)
            latest.setdefault(str(item.target), item)
        return list(latest.values())[:limit]

    @_guarded
    async def count_items_since(self, requester: str, since: float) -> int:
        cursor = await self._db.execute(
            "SELECT COUNT(*) FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE jobs.requester = ? AND jobs.created >= ?",
            (requester, since),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    @_guarded
    async def last_success(self, target: str) -> Item | None:
        cursor = await self._db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE target = ? AND status IN (?, ?) "
            "ORDER BY updated DESC LIMIT 1",
            (target, ItemStatus.SUCCEEDED.value, ItemStatus.ALREADY_MIRRORED.value),
        )
        row = await cursor.fetchone()
        return _item(row) if row else None

    @_guarded
    async def add_actions(self, actions: Sequence[StoredAction]) -> None:
        if not actions:
            return
        async with self._writing, _transaction(self._db):
            await self._db.executemany(
                "INSERT OR IGNORE INTO actions (id, owner, chat, command, created, used) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(a.id, a.owner, a.chat, a.command, a.created, a.used) for a in actions],
            )

    @_guarded
    async def get_action(self, action_id: str) -> StoredAction | None:
        cursor = await self._db.execute(
            "SELECT id, owner, chat, command, created, used FROM actions WHERE id = ?",
            (action_id,),
        )
        row = await cursor.fetchone()
        return StoredAction(*row) if row else None

    @_guarded
    async def use_action(self, action_id: str) -> bool:
        async with self._writing, _transaction(self._db):
            cursor = await self._db.execute(
                "UPDATE actions SET used = ? WHERE id = ? AND used IS NULL",
                (time.time(), action_id),
            )
            return cursor.rowcount == 1

    @_guarded
    async def first_notice(self, key: str) -> bool:
        async with self._writing, _transaction(self._db):
            cursor = await self._db.execute(
                "INSERT OR IGNORE INTO notices (key, created) VALUES (?, ?)", (key, time.time())
            )
            return cursor.rowcount == 1

    @_guarded
    async def get_language(self, user: str) -> str | None:
        cursor = await self._db.execute(
            "SELECT language FROM user_languages WHERE person = ?", (user,)
        )
        row = await cursor.fetchone()
        return str(row[0]) if row else None

    @_guarded
    async def set_language(self, user: str, language: str | None) -> None:
        async with self._writing, _transaction(self._db):
            if language is None:
                await self._db.execute("DELETE FROM user_languages WHERE person = ?", (user,))
            else:
                await self._db.execute(
                    "INSERT INTO user_languages (person, language, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (person) DO UPDATE SET language = excluded.language, "
                    "updated = excluded.updated",
                    (user, language, time.time()),
                )

    @_guarded
    async def copies_of(self, source: str) -> list[tuple[Item, float]]:
        ok = (ItemStatus.SUCCEEDED.value, ItemStatus.ALREADY_MIRRORED.value)
        cursor = await self._db.execute(
            f"SELECT {_ITEM_COLUMNS}, MAX(updated), "
            "(SELECT MIN(first.updated) FROM items AS first WHERE first.source = items.source "
            "AND first.target = items.target AND first.status IN (?, ?)) "
            "FROM items WHERE source = ? AND status IN (?, ?) GROUP BY target, platform "
            "ORDER BY MAX(updated) DESC",
            (*ok, source, *ok),
        )
        return [(_item(row[:-2]), float(row[-1])) for row in await cursor.fetchall()]

    @_guarded
    async def add_watch(self, watch: Watch) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute(
                f"INSERT INTO watches ({_WATCH_COLUMNS}) VALUES ({', '.join('?' * 12)})",
                _watch_row(watch),
            )

    @_guarded
    async def set_watch_reply_ref(self, watch: Watch) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute(
                "UPDATE watches SET reply_ref = ? WHERE id = ?", (watch.reply_ref, watch.id)
            )

    @_guarded
    async def save_watch_check(self, watch: Watch) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute(
                "UPDATE watches SET next_check = ?, last_check = ?, digests = ?, error = ? "
                "WHERE id = ?",
                (
                    watch.next_check,
                    watch.last_check,
                    json.dumps(watch.digests),
                    watch.error,
                    watch.id,
                ),
            )

    @_guarded
    async def get_watch(self, watch_id: str) -> Watch | None:
        found = await self._watches("WHERE id = ?", (watch_id,))
        return found[0] if found else None

    @_guarded
    async def watches(self, chat: str | None = None) -> list[Watch]:
        if chat is None:
            return await self._watches("ORDER BY created", ())
        return await self._watches("WHERE chat = ? ORDER BY created", (chat,))

    @_guarded
    async def delete_watch(self, watch_id: str) -> None:
        async with self._writing, _transaction(self._db):
            await self._db.execute("DELETE FROM watches WHERE id = ?", (watch_id,))

    async def _watches(self, where: str, params: tuple[Any, ...]) -> list[Watch]:
        cursor = await self._db.execute(f"SELECT {_WATCH_COLUMNS} FROM watches {where}", params)
        return [_watch(row) for row in await cursor.fetchall()]

    async def _jobs(self, where: str, params: tuple[Any, ...]) -> list[Job]:
        cursor = await self._db.execute(
            f"SELECT id, requester, chat, created, reply_ref FROM jobs {where}", params
        )
        jobs = []
        for job_id, requester, chat, created, reply_ref in await cursor.fetchall():
            items_cursor = await self._db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE job_id = ? ORDER BY idx", (job_id,)
            )
            items = [_item(row) for row in await items_cursor.fetchall()]
            jobs.append(Job(job_id, requester, chat, items, created, reply_ref))
        return jobs


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
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"MIRROR_DB: the database was written by a newer hub-mirror-bot (schema "
                f"{version}; this one knows up to {SCHEMA_VERSION}); upgrade the bot."
            )
        for number in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[number]:
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


_WATCH_COLUMNS = (
    "id, requester, chat, image, pattern, platform, created, reply_ref, next_check, "
    "last_check, digests, error"
)


def _watch_row(watch: Watch) -> tuple[Any, ...]:
    return (
        watch.id,
        watch.requester,
        watch.chat,
        watch.image.name,
        watch.pattern,
        platform_text(watch.platform),
        watch.created,
        watch.reply_ref,
        watch.next_check,
        watch.last_check,
        json.dumps(watch.digests),
        watch.error,
    )


def _watch(row: Any) -> Watch:
    (wid, requester, chat, image, pattern, platform, created, reply_ref, nxt, last, dig, err) = row
    return Watch(
        id=wid,
        requester=requester,
        chat=chat,
        image=parse_reference(image).repo_only,
        pattern=pattern,
        platform=parse_platform(platform),
        created=created,
        reply_ref=reply_ref,
        next_check=nxt,
        last_check=last,
        digests=json.loads(dig),
        error=err,
    )


def _item(row: Any) -> Item:
    (spec, source, target, platform, status, engine, sdig, tdig, size, seconds, error) = row[:11]
    referrers, artifact, not_before = row[11:]
    return Item(
        spec=spec,
        source=parse_reference(source),
        target=parse_reference(target),
        platform=parse_platform(platform),
        status=ItemStatus(status),
        engine=engine,
        source_digest=sdig,
        target_digest=tdig,
        bytes=size,
        seconds=seconds,
        error=error,
        referrers=_referrers_of(referrers),
        artifact=ArtifactKind(artifact) if artifact else None,
        not_before=not_before,
    )


def _referrers_text(referrers: tuple[Referrer, ...]) -> str | None:
    if not referrers:
        return None
    return json.dumps([[r.digest, r.artifact_type, r.kind.value] for r in referrers])


def _referrers_of(text: str | None) -> tuple[Referrer, ...]:
    if not text:
        return ()
    return tuple(Referrer(d, t, ReferrerKind(k)) for d, t, k in json.loads(text))
