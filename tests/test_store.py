"""The SQLite store on a real file: what is written is what a restarted process reads."""

from __future__ import annotations

from pathlib import Path

from mirror.models import Item, ItemStatus, Job
from mirror.platform import DEFAULT_PLATFORM
from mirror.reference import parse_reference
from mirror.store import open_store


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
