"""The store on a real SQLite file and on a real PostgreSQL server (the lab's): what is
written is what a restarted process reads, what an older version wrote is upgraded, and
every failure is one sentence."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

import lab
from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.models import Item, ItemStatus, Job, StoredAction, Watch
from mirror.platform import DEFAULT_PLATFORM
from mirror.reference import parse_reference
from mirror.store import (
    SCHEMA_VERSION,
    STORE_DOWN,
    StoreError,
    StoreUnusable,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """``MIRROR_DB`` for each backend: a new SQLite file, or a new PostgreSQL database (the
    server starts only when a PostgreSQL case runs)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return tmp_path / "store.db"


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


async def test_jobs_survive_reopening_the_store(location: Path | str) -> None:
    db = location
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
        assert loaded.created == job.created  # to the microsecond: no 4-byte REAL anywhere
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


async def test_recent_jobs_are_per_chat_and_newest_first(location: Path | str) -> None:
    store = await open_store(location)
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


async def test_concurrent_writes_are_all_kept(location: Path | str) -> None:
    store = await open_store(location)
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


async def test_a_read_never_sees_another_coroutines_uncommitted_writes(tmp_path: Path) -> None:
    """SQLite: one connection serves every coroutine, and a transaction open on it is seen by
    every statement on it. A read waits for the transaction, and sees all of it or none."""
    import aiosqlite

    from mirror.store.sqlite import SQLiteDatabase

    db = SQLiteDatabase(await aiosqlite.connect(tmp_path / "shared.db", isolation_level=None))
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE rows (n INTEGER)")
        half_way, go_on = asyncio.Event(), asyncio.Event()

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO rows VALUES (1)")
                half_way.set()
                await go_on.wait()
                await tx.execute("INSERT INTO rows VALUES (2)")

        async def read() -> list[tuple[int, ...]]:
            await half_way.wait()
            return [tuple(row) for row in await db.fetchall("SELECT n FROM rows ORDER BY n")]

        writer, reader = asyncio.create_task(write()), asyncio.create_task(read())
        await half_way.wait()
        for _ in range(5):  # the reader's turn: its query is asked now, if it may be
            await asyncio.sleep(0)
        go_on.set()
        await writer
        assert await reader == [(1,), (2,)]
    finally:
        await db.close()


async def test_referrers_and_artifact_kind_are_stored(location: Path | str) -> None:
    db = location
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
    location: Path | str,
) -> None:
    db = location
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


async def test_copies_of_a_source_are_the_newest_per_target_since_the_first(
    location: Path | str,
) -> None:
    store = await open_store(location)
    try:
        stamps = iter([1000.0, 1010.0, 1020.0])
        for job_id, target in (("cp1", "a:1"), ("cp2", "a:1"), ("cp3", "b:1")):
            job = make_job(job_id, "console:local", "nginx:1.25")
            job.items[0].target = parse_reference(f"127.0.0.1:5000/m/{target}")
            job.items[0].status = ItemStatus.SUCCEEDED
            job.items[0].bytes = len(job_id) * 100 + int(job_id[-1])
            await store.add_job(job)
            _set_updated(location, job_id, next(stamps))
        failed = make_job("cp4", "console:local", "nginx:1.25")
        failed.items[0].status = ItemStatus.FAILED
        await store.add_job(failed)

        copies = await store.copies_of("docker.io/library/nginx:1.25")
        assert [(str(i.target), i.bytes, since) for i, since in copies] == [
            ("127.0.0.1:5000/m/b:1", 303, 1020.0),
            ("127.0.0.1:5000/m/a:1", 302, 1000.0),  # the newest copy, mirrored since the first
        ]
        assert await store.copies_of("docker.io/library/redis:7") == []

        # The tag a:1 is overwritten by a copy of every platform, then b:1 by another
        # source: only the copy each target holds now is listed (issue 23).
        stamps = iter([1030.0, 1040.0])
        every = make_job("cp5", "console:local", "nginx:1.25")
        every.items[0].target = parse_reference("127.0.0.1:5000/m/a:1")
        every.items[0].platform = None
        every.items[0].status = ItemStatus.SUCCEEDED
        other = make_job("cp6", "console:local", "nginx:1.26")
        other.items[0].target = parse_reference("127.0.0.1:5000/m/b:1")
        other.items[0].status = ItemStatus.SUCCEEDED
        for job in (every, other):
            await store.add_job(job)
            _set_updated(location, job.id, next(stamps))
        copies = await store.copies_of("docker.io/library/nginx:1.25")
        assert [(str(i.target), i.platform, since) for i, since in copies] == [
            ("127.0.0.1:5000/m/a:1", None, 1000.0)
        ]
    finally:
        await store.close()


def _set_updated(location: Path | str, job_id: str, when: float) -> None:
    """Back-date a result: ``updated`` is the store's own clock, not a field of the item."""
    if isinstance(location, str):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("UPDATE items SET updated = %s WHERE job_id = %s", (when, job_id))
    else:
        with contextlib.closing(sqlite3.connect(location)) as conn:
            conn.execute("UPDATE items SET updated = ? WHERE job_id = ?", (when, job_id))
            conn.commit()


async def test_watches_counts_and_notices_round_trip(location: Path | str) -> None:
    store = await open_store(location)
    try:
        watch = Watch(
            id="w1",
            requester="console:alice",
            chat="console:local",
            image=parse_reference("nginx").repo_only,
            pattern="1.27.*",
            platform=DEFAULT_PLATFORM,
            created=1234.5,
        )
        await store.add_watch(watch)
        watch.reply_ref = "console:9"
        await store.set_watch_reply_ref(watch)
        watch.digests = {"1.27.0": "", "1.27.1": ""}
        watch.last_check, watch.next_check, watch.error = 2000.25, 5600.5, "rate limited"
        await store.save_watch_check(watch)
        assert await store.get_watch("w1") == watch
        assert await store.watches("console:local") == [watch]
        assert await store.watches("slack:C1") == []
        await store.delete_watch("w1")
        assert await store.watches() == []

        await store.add_job(make_job("n1", "console:local", "nginx", "redis"))
        assert await store.count_items_since("console:alice", 0) == 2
        assert await store.count_items_since("console:bob", 0) == 0
        assert [await store.first_notice("hub-public") for _ in range(2)] == [True, False]
        await store.ping()
    finally:
        await store.close()
    with pytest.raises(StoreError, match=STORE_DOWN.split("(")[0].strip()):
        await store.ping()


# -- PostgreSQL only ---------------------------------------------------------------------------


async def test_postgres_from_a_newer_bot_is_refused(pg_dsn: str) -> None:
    store = await open_store(pg_dsn)
    await store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnusable, match="written by a newer hub-mirror-bot"):
        await open_store(pg_dsn)


async def test_processes_starting_together_upgrade_postgres_once(pg_dsn: str) -> None:
    stores = await asyncio.gather(*(open_store(pg_dsn) for _ in range(4)))
    try:
        await stores[0].add_job(make_job("shared", "console:local", "nginx"))
        for store in stores:
            assert (await store.get_job("shared")) is not None
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


async def test_postgres_out_of_reach_at_start_is_one_sentence_naming_mirror_db(
    postgres: lab.Postgres,
) -> None:
    port = lab.free_port()  # nobody listens there
    with pytest.raises(StoreUnusable) as refused:
        await open_store(f"postgresql://mirror:s3cret-pw@127.0.0.1:{port}/mirror")
    assert str(refused.value) == (
        f"MIRROR_DB: cannot connect to PostgreSQL at 127.0.0.1:{port}/mirror (Connection "
        "refused); start it or point MIRROR_DB at a server this bot can reach."
    )
    wrong = postgres.dsn().replace(postgres.password, "s3cret-pw")
    with pytest.raises(StoreUnusable) as denied:
        await open_store(wrong)
    assert "password authentication failed" in str(denied.value)
    assert "s3cret-pw" not in str(denied.value)
    assert str(denied.value).startswith("MIRROR_DB: ")


@pytest.mark.slow  # waits out the pool's timeout while the server is down
async def test_a_postgres_restart_during_a_run_costs_only_the_calls_made_meanwhile(
    postgres: lab.Postgres, pg_dsn: str
) -> None:
    store = await open_store(pg_dsn)
    try:
        await store.add_job(make_job("before", "console:local", "nginx"))
        postgres.stop()
        with pytest.raises(StoreError) as caught:
            await store.get_job("before")
        assert str(caught.value) == STORE_DOWN
        postgres.restart()
        # The pool replaces the broken connections; no new store, no restart of the bot.
        job = await store.get_job("before")
        assert job is not None and job.id == "before"
        await store.add_job(make_job("after", "console:local", "redis"))
        assert [j.id for j in await store.recent_jobs("console:local")] == ["after", "before"]
    finally:
        await store.close()
