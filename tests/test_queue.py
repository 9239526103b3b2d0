"""Copies through the PostgreSQL queue: a front in this process that cannot copy at all (its
only engine is a Docker daemon that does not exist), real ``mirror-bot worker`` processes,
the lab's registries and PostgreSQL. A worker killed mid-copy leaves it to another, and a
front restarted mid-copy still gets the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import psycopg
import pytest

import lab as lab_module
from bot.check import check_queue
from bot.runtime import Deployment, Role, Runtime, open_runtime
from bot.settings import Settings
from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.engines.base import CopyRequest
from mirror.models import Item, ItemStatus, Job, Outcome, new_job_id
from mirror.naming import parse_image_spec, parse_target_base, target_for
from mirror.platform import DEFAULT_PLATFORM
from mirror.queue.app import COPY_TASK, open_queue, pool_of
from mirror.queue.codec import outcome_json, outcome_of
from mirror.reference import parse_reference
from mirror.text import Text
from tests.support.cli import MIRROR_BOT, Workers
from tests.support.throttle import throttled


def item_for(lab: lab_module.Lab, image: str, namespace: str) -> Item:
    spec = parse_image_spec(image)
    target = target_for(
        spec, parse_target_base(f"{lab.target}/{namespace}"), DEFAULT_PLATFORM, DEFAULT_PLATFORM
    )
    return Item(spec.text, spec.source, target, DEFAULT_PLATFORM)


def job_of(*items: Item) -> Job:
    return Job(new_job_id(), "console:alice", "console:local", list(items))


def front(
    lab: lab_module.Lab, dsn: str, *sources: str, max_bytes: int | None = None
) -> AbstractAsyncContextManager[Runtime]:
    """``mirror-bot run``'s runtime, with a Docker engine that cannot reach any daemon: if it
    copied anything itself, the copy would fail."""
    settings = Settings(
        mirror_max_image_bytes=max_bytes,
        mirror_target=f"{lab.target}/mirror",
        mirror_db=dsn,
        mirror_engine="docker",
        docker_host="unix:///nonexistent/docker.sock",
        mirror_allowed_sources=(lab.source, *sources),
        mirror_insecure_registries=(lab.source, lab.target, *sources),
    )
    return open_runtime(settings, role=Role.FRONT)


def copy_jobs(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, status::text FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
            (COPY_TASK,),
        ).fetchall()
    return [(int(job_id), status) for job_id, status in rows]


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_workers_copy_for_fronts_and_identical_copies_run_once(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    # The source is slowed so the first copy is still running when the second front asks:
    # without it, a fast copy can finish first and the second job is "already mirrored".
    with throttled(lab.source, 2_000_000) as relay:
        workers(relay.address)
        workers(relay.address)
        image = f"{relay.address}/library/multi:1.0"  # 6 MiB at 2 MB/s
        stages: dict[str, set[str]] = {}

        def watch(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None:
                stages.setdefault(job.id, set()).add(progress.stage.value)

        async with (
            front(lab, pg_dsn, relay.address) as one,
            front(lab, pg_dsn, relay.address) as two,
        ):
            first = job_of(
                item_for(lab, image, "q"),
                item_for(lab, f"{relay.address}/library/hello:1.0", "q"),
            )
            second = job_of(item_for(lab, image, "q"))
            done = await asyncio.wait_for(
                asyncio.gather(
                    await one.service.submit(first, watch),
                    await two.service.submit(second, watch),
                ),
                timeout=120,
            )
    for job in done:
        for item in job.items:
            assert item.status is ItemStatus.SUCCEEDED, item.error
            assert item.engine == "registry"  # a worker's engine: the fronts have none that work
    assert done[0].items[0].target_digest == done[1].items[0].target_digest
    assert "copying" in stages[first.id] and "copying" in stages[second.id]  # heard live
    # Two fronts asked for the same copy at once: it was queued once (and hello once).
    assert [status for _, status in copy_jobs(pg_dsn)] == ["succeeded", "succeeded"]


@pytest.mark.slow  # a throttled copy, a killed worker, the stalled-copy scan
async def test_a_worker_killed_mid_copy_leaves_it_to_another_and_a_new_front_posts_it(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    with throttled(lab.source, 1_000_000) as relay:
        image = f"{relay.address}/library/multi:1.0"  # 6 MiB at 1 MB/s
        job = job_of(item_for(lab, image, "killed"))
        first = workers(relay.address)
        seen: list[int] = []

        def watch(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None and progress.done:
                seen.append(progress.done)

        async with front(lab, pg_dsn, relay.address) as before:
            await before.service.submit(job, watch)
            await wait_for(lambda: bool(seen), "bytes copied by the first worker")
        # The front stopped without an outcome (as on SIGTERM: the job stays unfinished) ...
        [(job_id, status)] = copy_jobs(pg_dsn)
        assert status == "doing"
        os.killpg(first.pid, signal.SIGKILL)  # ... and the worker copying it dies outright.
        first.wait(10)
        workers(relay.address)

        async with front(lab, pg_dsn, relay.address) as after:
            [unfinished] = await after.service.store.unfinished_jobs()
            assert unfinished.id == job.id
            done = await asyncio.wait_for(after.service.start(unfinished, lambda _: None), 120)
    [item] = done.items
    assert item.status is ItemStatus.SUCCEEDED, item.error
    assert copy_jobs(pg_dsn) == [(job_id, "succeeded")]  # the same job, finished by the other
    with psycopg.connect(pg_dsn) as conn:
        [(attempts,)] = conn.execute(
            "SELECT attempts FROM procrastinate_jobs WHERE id = %s", (job_id,)
        ).fetchall()
    # procrastinate counts ended runs: the killed one (requeued by the stalled-copy scan) and
    # the other worker's; a copy that ran once counts 1.
    assert attempts == 2
    stored = await _stored(pg_dsn, job.id)
    assert stored.items[0].status is ItemStatus.SUCCEEDED


@pytest.mark.slow  # a throttled copy
async def test_cancel_stops_the_copy_on_the_worker(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    with throttled(lab.source, 1_000_000) as relay:
        workers(relay.address)
        seen: list[int] = []

        def watch(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None and progress.done:
                seen.append(progress.done)

        async with front(lab, pg_dsn, relay.address) as runtime:
            job = job_of(item_for(lab, f"{relay.address}/library/multi:1.0", "cancelled"))
            await runtime.service.submit(job, watch)
            await wait_for(lambda: bool(seen), "bytes copied by the worker")
            assert await runtime.service.cancel(job.id)
            assert job.items[0].status is ItemStatus.CANCELLED
            # The worker's copy is stopped, not left to finish for nobody.
            await wait_for(
                lambda: [s for _, s in copy_jobs(pg_dsn)] == ["aborted"], "the copy aborted"
            )


async def _stored(dsn: str, job_id: str) -> Job:
    from mirror.store import open_store

    store = await open_store(dsn)
    try:
        job = await store.get_job(job_id)
    finally:
        await store.close()
    assert job is not None
    return job


async def test_a_worker_without_postgres_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [MIRROR_BOT, "worker"],
        env={**os.environ, "MIRROR_DB": str(tmp_path / "m.db")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "MIRROR_DB: `mirror-bot worker` takes its copies from a PostgreSQL queue; set MIRROR_DB "
        "to the postgresql:// URL the chat front uses."
    ]


def test_every_field_of_an_outcome_crosses_the_queue() -> None:
    """What a worker writes is what the front applies: a field left out of the wire format
    (a pull limit's ``not_before``, say) would silently change what the bot does next."""
    outcome = Outcome(
        ItemStatus.WAITING,
        engine="registry",
        source_digest="sha256:" + "a" * 64,
        target_digest="sha256:" + "b" * 64,
        bytes=1234,
        seconds=1.5,
        error=Text(
            "`{image}` is too large: {size} MiB, over {limit}.",
            image="nginx",
            size=Text("at least {n:.1f}", n=3.25),
            limit=12,
        ),
        referrers=(Referrer("sha256:" + "c" * 64, "application/x", ReferrerKind.SIGNATURE),),
        artifact=ArtifactKind.CHART,
        suggestions=("docker.io/library/nginx:1.27",),
        not_before=1_800_000_000.25,
    )
    assert {f.name for f in dataclasses.fields(Outcome)} <= set(json.loads(outcome_json(outcome)))
    back = outcome_of(outcome_json(outcome))
    assert back == outcome
    # The front renders it in the asker's language: the template crosses, not only English.
    assert isinstance(back.error, Text) and back.error.msgid == outcome.error.msgid
    assert isinstance(back.error.params["size"], Text)


async def test_check_says_whether_any_worker_beats(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    settings = Settings(mirror_target=f"{lab.target}/mirror", mirror_db=pg_dsn)
    [alone] = await check_queue(settings)
    assert alone.line() == (
        "copy workers: FAILED: no `mirror-bot worker` has beaten in the last 30 s, so copies "
        "would wait in the queue; start one where it reaches PostgreSQL, the sources and the "
        "target."
    )
    workers("")
    found: list[str] = []

    async def beating() -> bool:
        [result] = await check_queue(settings)
        found.append(result.line())
        return result.ok

    deadline = time.monotonic() + 60
    while not await beating():
        assert time.monotonic() < deadline, found[-1]
        await asyncio.sleep(0.2)
    assert found[-1] == "copy workers: ok (1 beating; 0 copies waiting, 0 running)"
    no_queue = Settings(mirror_target=f"{lab.target}/mirror", mirror_db=str(Path("x.db")))
    assert await check_queue(no_queue) == []  # SQLite: the bot copies itself


@pytest.mark.slow  # a PostgreSQL restart and the reconnections after it
async def test_front_and_worker_ride_out_a_postgres_restart(
    lab: lab_module.Lab, postgres: lab_module.Postgres, pg_dsn: str, workers: Workers
) -> None:
    workers("")
    async with front(lab, pg_dsn) as runtime:
        first = job_of(item_for(lab, f"{lab.source}/library/hello:1.0", "restart"))
        done = await asyncio.wait_for(await runtime.service.submit(first, lambda _: None), 120)
        assert done.items[0].status is ItemStatus.SUCCEEDED, done.items[0].error
        postgres.restart()
        # Same front, same worker: both reconnect by themselves.
        second = job_of(item_for(lab, f"{lab.source}/library/multi:1.0", "restart"))
        done = await asyncio.wait_for(await runtime.service.submit(second, lambda _: None), 120)
    assert done.items[0].status is ItemStatus.SUCCEEDED, done.items[0].error
    assert done.items[0].engine == "registry"


@pytest.mark.slow  # a throttled copy
async def test_a_front_joining_a_running_copy_starts_where_it_is(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    with throttled(lab.source, 1_000_000) as relay:
        workers(relay.address)
        image = f"{relay.address}/library/multi:1.0"
        moving: list[int] = []
        joined: list[tuple[str, ItemStatus]] = []

        def watch_first(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None and progress.done:
                moving.append(progress.done)

        def watch_second(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None:
                joined.append((progress.stage.value, job.items[0].status))

        async with (
            front(lab, pg_dsn, relay.address) as one,
            front(lab, pg_dsn, relay.address) as two,
        ):
            first = await one.service.submit(job_of(item_for(lab, image, "join")), watch_first)
            await wait_for(lambda: bool(moving), "bytes copied")
            second = await two.service.submit(job_of(item_for(lab, image, "join")), watch_second)
            done = await asyncio.wait_for(asyncio.gather(first, second), 120)
    assert [job.items[0].status for job in done] == [ItemStatus.SUCCEEDED] * 2
    # Its first view is the copy as it stands, not "queued" until the next stage.
    assert joined[0] == ("copying", ItemStatus.RUNNING)
    assert len(copy_jobs(pg_dsn)) == 1


async def test_the_size_limit_refuses_before_anything_is_queued(
    lab: lab_module.Lab, pg_dsn: str
) -> None:
    async with front(lab, pg_dsn, max_bytes=1 << 20) as runtime:  # no worker at all
        job = job_of(item_for(lab, f"{lab.source}/library/multi:1.0", "big"))
        done = await asyncio.wait_for(await runtime.service.submit(job, lambda _: None), 60)
    [item] = done.items
    assert item.status is ItemStatus.FAILED
    assert item.error is not None and "MIRROR_MAX_IMAGE_BYTES" in item.error
    assert copy_jobs(pg_dsn) == []


def connections_to(dsn: str) -> int:
    """Client sessions on ``dsn``'s database, this question's own left out."""
    with psycopg.connect(dsn) as conn:
        [(count,)] = conn.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return int(count)


async def test_a_front_s_every_connection_is_one_of_the_store_s_pool(pg_dsn: str) -> None:
    settings = Settings(mirror_db=pg_dsn, mirror_target="registry.example/mirror")
    async with open_runtime(settings, role=Role.FRONT) as runtime:
        assert runtime.deployment is Deployment.QUEUE
        assert runtime.queue is not None
        pool = pool_of(runtime.store)
        assert runtime.queue.pool is pool and runtime.queue.connector.pool is pool
        # Queue and hear a little (the defer, the progress read, the LISTEN) ...
        async with asyncio.timeout(30):
            request = CopyRequest(
                parse_reference("registry.example/a:1"),
                parse_reference("registry.example/mirror/a:1"),
                DEFAULT_PLATFORM,
                None,
            )
            queued = asyncio.create_task(runtime.service.copier.copy(request, lambda _: None))
            while not copy_jobs(pg_dsn):
                await asyncio.sleep(0.05)
            queued.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await queued
        # ... and the database sees no session but the pool's (one it is still opening is
        # counted by the pool first).
        assert 0 < connections_to(pg_dsn) <= pool.get_stats()["pool_size"]


async def test_a_listen_gives_its_connection_back_not_listening(pg_dsn: str) -> None:
    from mirror.queue.front import open_front
    from mirror.store import open_store

    store = await open_store(pg_dsn)
    try:
        async with open_queue(store) as queue:
            async with open_front(queue):
                pass
            pool = queue.pool
            size = pool.get_stats()["pool_size"]
            async with contextlib.AsyncExitStack() as borrowed:
                for _ in range(size):  # every connection the pool holds
                    conn = await borrowed.enter_async_context(pool.connection())
                    cursor = await conn.execute("SELECT COUNT(*) FROM pg_listening_channels()")
                    assert await cursor.fetchone() == (0,)
    finally:
        await store.close()
