"""The SQLite store: jobs, per-image results and history, surviving restarts.

Every state change of an item is written before it is announced, so a crash never loses a job:
on start the service finds the unfinished ones here and resumes or fails them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiosqlite

from mirror.models import Item, ItemStatus, Job, platform_text
from mirror.platform import parse_platform
from mirror.reference import parse_reference

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    chat TEXT NOT NULL,
    created REAL NOT NULL,
    reply_ref TEXT
);
CREATE INDEX IF NOT EXISTS jobs_chat ON jobs (chat, created);
CREATE TABLE IF NOT EXISTS items (
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
);
CREATE INDEX IF NOT EXISTS items_target ON items (target, status);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
"""

BUSY_TIMEOUT_SECONDS = 3.0

_ITEM_COLUMNS = (
    "spec, source, target, platform, status, engine, source_digest, target_digest, "
    "bytes, seconds, error"
)


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A locked database answers with an error within seconds instead of hanging a chat.
        db = await aiosqlite.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.executescript(_SCHEMA)
        await db.commit()
        return cls(db)

    async def ping(self) -> None:
        """Raise sqlite3.Error unless the database answers (for the health check)."""
        cursor = await self._db.execute("SELECT 1")
        await cursor.fetchone()

    async def close(self) -> None:
        await self._db.close()

    async def add_job(self, job: Job) -> None:
        await self._db.execute(
            "INSERT INTO jobs (id, requester, chat, created, reply_ref) VALUES (?, ?, ?, ?, ?)",
            (job.id, job.requester, job.chat, job.created, job.reply_ref),
        )
        for idx, item in enumerate(job.items):
            await self._write_item(job.id, idx, item)
        await self._db.commit()

    async def save_item(self, job: Job, idx: int) -> None:
        await self._write_item(job.id, idx, job.items[idx])
        await self._db.commit()

    async def set_reply_ref(self, job: Job) -> None:
        await self._db.execute(
            "UPDATE jobs SET reply_ref = ? WHERE id = ?", (job.reply_ref, job.id)
        )
        await self._db.commit()

    async def _write_item(self, job_id: str, idx: int, item: Item) -> None:
        await self._db.execute(
            f"INSERT OR REPLACE INTO items (job_id, idx, {_ITEM_COLUMNS}, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                time.time(),
            ),
        )

    async def get_job(self, job_id: str) -> Job | None:
        jobs = await self._jobs("WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    async def recent_jobs(self, chat: str, limit: int = 10) -> list[Job]:
        return await self._jobs("WHERE chat = ? ORDER BY created DESC LIMIT ?", (chat, limit))

    async def unfinished_jobs(self) -> list[Job]:
        return await self._jobs(
            "WHERE id IN (SELECT job_id FROM items WHERE status IN (?, ?)) ORDER BY created",
            (ItemStatus.QUEUED.value, ItemStatus.RUNNING.value),
        )

    async def history(self, chat: str, limit: int = 20) -> list[Item]:
        """What this chat mirrored successfully, newest first, one row per target."""
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

    async def count_items_since(self, requester: str, since: float) -> int:
        """How many images ``requester`` asked for since ``since`` (for per-user rates)."""
        cursor = await self._db.execute(
            "SELECT COUNT(*) FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE jobs.requester = ? AND jobs.created >= ?",
            (requester, since),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def last_success(self, target: str) -> Item | None:
        """The newest successful copy to ``target``, from any chat."""
        cursor = await self._db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE target = ? AND status IN (?, ?) "
            "ORDER BY updated DESC LIMIT 1",
            (target, ItemStatus.SUCCEEDED.value, ItemStatus.ALREADY_MIRRORED.value),
        )
        row = await cursor.fetchone()
        return _item(row) if row else None

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


def _item(row: Any) -> Item:
    (spec, source, target, platform, status, engine, sdig, tdig, size, seconds, error) = row
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
    )
