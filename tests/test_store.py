"""The SQLite store on a real file: what is written is what a restarted process reads,
what an older version wrote is upgraded, and every failure is one sentence."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.models import Item, ItemStatus, Job, StoredAction
from mirror.platform import DEFAULT_PLATFORM
from mirror.reference import parse_reference
from mirror.store import (
    SCHEMA_VERSION,
    STORE_DOWN,
    StoreError,
    StoreUnusable,
    open_store,
)


def make_job(job_id: str, chat: str, *sources: str) -> Job:
    items = [
        Item(
            s,
            parse_reference(s),
            parse_reference(f"127.0.0.1:5000/m/{parse_reference(s).repository.replace('/', '.')}"),
            DEFAULT_PLATFORM if i == 0 else None,
        )
        for i, s in enumerate(sources)
    ]
    return Job(job_id, "console:alice", chat, items, reply_ref="console:1")


async def test_jobs_survive_reopening_the_file(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = await open_store(db)
    job = make_job("aaaaaa", "console:local", "nginx:1.25", "quay.io/x/y@sha256:" + "a" * 64)
    await store.add_job(job)
    job.items[0].status = ItemStatus.SUCCEEDED
    job.items[0].target_digest = "sha256:" + "b" * 64
    job.items[0].bytes = 1234
    await store.save_item(job, 0)
    await store.close()

    reopened = await open_store(db)
    try:
        loaded = await reopened.get_job("aaaaaa")
        assert loaded is not None
        assert loaded.items == job.items
        assert loaded.items[1].platform is None
        assert loaded.reply_ref == "console:1"
        assert [j.id for j in await reopened.unfinished_jobs()] == ["aaaaaa"]
        assert [str(i.source) for i in await reopened.history("console:local")] == [
            "docker.io/library/nginx:1.25"
        ]
        assert await reopened.history("slack:C1") == []
        success = await reopened.last_success(str(job.items[0].target))
        assert success is not None and success.bytes == 1234
    finally:
        await reopened.close()


async def test_recent_jobs_are_per_chat_and_newest_first(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "store.db")
    try:
        for n, chat in enumerate(["console:a", "console:b", "console:a"]):
            job = make_job(f"job00{n}", chat, "nginx")
            job.created = 1000.0 + n
            await store.add_job(job)
        assert [j.id for j in await store.recent_jobs("console:a")] == ["job002", "job000"]
    finally:
        await store.close()


# The schema exactly as it was before it had a version (user_version 0), rows and all.
_UNVERSIONED_DDL = """
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


def _write_unversioned(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as old:
        old.executescript(_UNVERSIONED_DDL)
        old.execute(
            "INSERT INTO jobs VALUES ('oldjob', 'console:alice', 'console:local', 1000.0, "
            "'console:7')"
        )
        old.execute(
            "INSERT INTO items VALUES ('oldjob', 0, 'nginx:1.25', "
            "'docker.io/library/nginx:1.25', '127.0.0.1:5000/m/nginx:1.25', 'linux/amd64', "
            "'succeeded', 'registry', 'sha256:" + "a" * 64 + "', 'sha256:" + "a" * 64 + "', "
            "4321, 2.5, NULL, 1001.0)"
        )
        old.execute(
            "INSERT INTO items VALUES ('oldjob', 1, 'redis', 'docker.io/library/redis:latest', "
            "'127.0.0.1:5000/m/redis:latest', 'all', 'running', NULL, NULL, NULL, NULL, NULL, "
            "NULL, 1002.0)"
        )
        old.commit()


def _schema(db: Path) -> tuple[int, set[str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    return int(version), names


async def test_a_database_from_before_versioning_is_upgraded_with_nothing_lost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    _write_unversioned(db)
    assert _schema(db) == (
        0,
        {"jobs", "jobs_chat", "items", "items_target", "items_status"}
        | {
            "sqlite_autoindex_jobs_1",
            "sqlite_autoindex_items_1",
        },
    )

    store = await open_store(db)
    try:
        job = await store.get_job("oldjob")
        assert job is not None
        assert (job.requester, job.chat, job.created, job.reply_ref) == (
            "console:alice",
            "console:local",
            1000.0,
            "console:7",
        )
        done, running = job.items
        assert (str(done.source), done.status, done.bytes, done.seconds) == (
            "docker.io/library/nginx:1.25",
            ItemStatus.SUCCEEDED,
            4321,
            2.5,
        )
        assert done.platform == DEFAULT_PLATFORM and running.platform is None
        assert done.referrers == () and done.artifact is None  # columns of version 3
        assert [j.id for j in await store.unfinished_jobs()] == ["oldjob"]
        assert await store.count_items_since("console:alice", 0) == 2
        # and the upgraded file takes new writes
        await store.add_job(make_job("newjob", "console:local", "busybox"))
        assert [j.id for j in await store.recent_jobs("console:local")] == ["newjob", "oldjob"]
    finally:
        await store.close()
    version, names = _schema(db)
    assert version == SCHEMA_VERSION >= 2
    assert "jobs_requester" in names
    assert "actions" in names

    again = await open_store(db)  # a current database is opened as it is
    await again.close()
    assert _schema(db) == (version, names)


async def test_a_database_from_a_newer_bot_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnusable, match="written by a newer hub-mirror-bot"):
        await open_store(db)


def under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("a regular file")
    return tmp / "file" / "sub" / "m.db"


def not_a_database(tmp: Path) -> Path:
    (tmp / "noise.db").write_bytes(b"\x89PNG, not SQLite" * 512)
    return tmp / "noise.db"


@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (under_a_file, "MIRROR_DB: cannot create the directory `{tmp}/file/sub` for the database"),
        (not_a_database, "MIRROR_DB: `{tmp}/noise.db` is not a SQLite database"),
    ],
)
async def test_an_unusable_path_is_one_sentence_naming_mirror_db(
    tmp_path: Path, make: Callable[[Path], Path], sentence: str
) -> None:
    with pytest.raises(StoreUnusable) as caught:
        await open_store(make(tmp_path))
    assert str(caught.value).startswith(sentence.format(tmp=tmp_path))


@pytest.mark.slow  # waits out the busy timeout
async def test_a_locked_database_fails_whole_writes_with_one_sentence(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    store = await open_store(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        job = make_job("lockme", "console:local", "nginx", "redis")
        with pytest.raises(StoreError) as caught:
            await store.add_job(job)
        assert str(caught.value) == STORE_DOWN
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        assert await store.get_job("lockme") is None  # nothing half-written
        await store.add_job(job)  # and the connection is not stuck in a transaction
        assert await store.get_job("lockme") == job
    finally:
        holder.close()
        await store.close()
    with pytest.raises(StoreError):
        await store.ping()  # a closed store says so in the same words


async def test_concurrent_writes_share_one_connection(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "busy.db")
    try:
        jobs = [make_job(f"job{n:03d}", "console:local", "nginx", "redis") for n in range(20)]
        await asyncio.gather(*(store.add_job(job) for job in jobs))
        for job in jobs:
            job.items[1].status = ItemStatus.FAILED
        await asyncio.gather(*(store.save_item(job, 1) for job in jobs))
        stored = await store.recent_jobs("console:local", limit=50)
        assert sorted(j.id for j in stored) == sorted(j.id for j in jobs)
        assert all(j.items[1].status is ItemStatus.FAILED for j in stored)
    finally:
        await store.close()


async def test_referrers_and_artifact_kind_are_stored(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = await open_store(db)
    job = make_job("cccccc", "console:local", "ghcr.io/acme/chart:1.0")
    await store.add_job(job)
    sig = Referrer(
        "sha256:" + "1" * 64,
        "application/vnd.dev.cosign.simplesigning.v1+json",
        ReferrerKind.SIGNATURE,
    )
    job.items[0].status = ItemStatus.SUCCEEDED
    job.items[0].referrers = (sig,)
    job.items[0].artifact = ArtifactKind.CHART
    await store.save_item(job, 0)
    await store.close()

    reopened = await open_store(db)
    try:
        found = await reopened.last_success(str(job.items[0].target))
        assert found is not None
        assert found.referrers == (sig,)
        assert found.artifact is ArtifactKind.CHART
    finally:
        await reopened.close()


async def test_a_button_survives_a_restart_keeps_its_first_meaning_and_acts_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "mirror.db"
    store = await open_store(db)
    try:
        first = StoredAction("abc123.cancel", "slack:U1", "slack:C1", "/cancel abc123")
        await store.add_actions([first])
        # The same view rendered again (every progress edit) stores nothing new.
        await store.add_actions([StoredAction(first.id, "slack:U2", "slack:C2", "/help")])
    finally:
        await store.close()
    reopened = await open_store(db)
    try:
        assert await reopened.get_action(first.id) == first
        assert await reopened.get_action("nope") is None
        both = await asyncio.gather(*(reopened.use_action(first.id) for _ in range(2)))
        assert sorted(both) == [False, True]
        used = await reopened.get_action(first.id)
        assert used is not None and used.used is not None
        assert await reopened.use_action("nope") is False
    finally:
        await reopened.close()
