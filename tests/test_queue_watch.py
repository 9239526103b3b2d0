"""Watches on the PostgreSQL queue: a real ``mirror-bot worker`` checks them on procrastinate's
periodic tick and the front (``MirrorBot`` on the queue, with no Watcher and a Docker engine
that reaches no daemon) mirrors and posts what moved, against the lab's registries."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest

import lab as lab_module
from bot.app import MirrorBot
from bot.runtime import Role, open_runtime
from bot.settings import Settings
from mirror.queue.watching import WATCH_TASK, cron_of, tick_of
from tests.support.cli import Workers
from tests.test_app import PLATFORM, say
from tests.test_watch import Room, answers, push, target_digest, until


def front_settings(lab: lab_module.Lab, dsn: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=dsn,
        mirror_target=f"{lab.target}/app",
        mirror_engine="docker",
        docker_host="unix:///nonexistent/docker.sock",  # this front cannot copy anything
        mirror_allowed_sources=(lab.source,),
        mirror_insecure_registries=(lab.source, lab.target),
        mirror_watch_interval="1s",
    )


@asynccontextmanager
async def front(settings: Settings, room: Room) -> AsyncIterator[MirrorBot]:
    """``mirror-bot run``'s front on the queue, posting fired watches in ``room``."""
    async with (
        open_runtime(settings, role=Role.FRONT) as runtime,
        MirrorBot(
            settings, runtime.service, runtime.policy, runtime.planner, runtime.render_options
        ) as bot,
    ):
        bot.follow_fired_watches({PLATFORM: room})
        yield bot


def rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


async def until_rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    async with asyncio.timeout(60):
        while not (found := rows(dsn, query, *params)):
            await asyncio.sleep(0.1)
    return found


async def test_workers_check_watches_and_the_front_posts_also_after_a_restart(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    repository = f"library/queued-{uuid.uuid4().hex[:8]}"
    first = push(lab.source, repository, "1.0", seed=401)
    workers("", MIRROR_WATCH_INTERVAL="1s")
    settings = front_settings(lab, pg_dsn)
    room = Room()
    async with front(settings, room) as bot:
        assert bot.watcher is None  # this front checks nothing upstream itself
        thread = await say(bot, "alice", "room1", f"/watch {lab.source}/{repository}:1.0")
        room.keep(thread)
        watch_id = thread.texts[0].split()[1].rstrip(":")

        await until(lambda: len(answers(thread)) == 1, "the first copy")
        assert first in answers(thread)[0]
        found = re.search(rf"{re.escape(lab.target)}/(\S+):1\.0 · ", answers(thread)[0])
        assert found, answers(thread)[0]
        target_repo = found.group(1)
        assert target_digest(lab, target_repo, "1.0") == first

        moved = push(lab.source, repository, "1.0", seed=402)
        await until(lambda: len(answers(thread)) == 2, "the copy after the move")
        told = answers(thread)[1]
        assert "moved upstream" in told and moved in told
        assert target_digest(lab, target_repo, "1.0") == moved
    # The checks ran as the periodic task, on the worker (the front has no engine that works
    # and no Watcher): procrastinate holds their runs.
    assert rows(pg_dsn, "SELECT 1 FROM procrastinate_jobs WHERE task_name = %s AND "
                "status = 'succeeded' LIMIT 1", WATCH_TASK)  # fmt: skip

    # The tag moves while no front runs: the worker stores what it saw ...
    again = push(lab.source, repository, "1.0", seed=403)
    await until_rows(pg_dsn, "SELECT tag FROM watch_fires WHERE watch_id = %s", watch_id)
    await asyncio.sleep(2)  # ... and keeps checking, without handing it over twice
    assert rows(pg_dsn, "SELECT tag FROM watch_fires WHERE watch_id = %s", watch_id) == [("1.0",)]
    assert len(answers(thread)) == 2

    # ... and a front started later posts it, once, where the watch was made.
    async with front(settings, room) as bot:
        await until(lambda: len(answers(thread)) == 3, "the copy after the restart")
        assert again in answers(thread)[2]
        assert target_digest(lab, target_repo, "1.0") == again
        await until(lambda: not rows(pg_dsn, "SELECT 1 FROM watch_fires"), "the sighting handled")
        stored = await bot.service.store.get_watch(watch_id)
        assert stored is not None and stored.digests == {"1.0": again} and stored.error is None
    assert len(answers(thread)) == 3


async def test_a_move_the_front_could_not_post_stays_stored_until_it_can(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    repository = f"library/unposted-{uuid.uuid4().hex[:8]}"
    first = push(lab.source, repository, "1.0", seed=501)
    worker = workers("", MIRROR_WATCH_INTERVAL="1s")
    room = Room()  # it cannot find the watch's thread again: the chat is out of reach
    query = "SELECT tag, not_before > seen FROM watch_fires WHERE watch_id = %s"
    async with front(front_settings(lab, pg_dsn), room) as bot:
        thread = await say(bot, "alice", "room1", f"/watch {lab.source}/{repository}:1.0")
        watch_id = thread.texts[0].split()[1].rstrip(":")
        # The worker saw it; the front tried, could not post, and put it off.
        put_off = "SELECT 1 FROM watch_fires WHERE watch_id = %s AND not_before > seen"
        await until_rows(pg_dsn, put_off, watch_id)
        # Without checks (they would clear the watch's error when nothing moved) the front's
        # retries keep saying why in /watches; the sighting stays, once.
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        errors: list[str | None] = []

        async def until_told_why() -> None:
            while not errors or errors[-1] is None:
                found = await bot.service.store.get_watch(watch_id)
                errors.append(found.error if found else None)
                await asyncio.sleep(0.1)

        async with asyncio.timeout(60):
            await until_told_why()
        assert errors[-1] == "The bot could not reach the chat where this watch was made."
        listed = await say(bot, "alice", "room1", "/watches")
        assert "could not reach the chat" in listed.texts[0]
        assert rows(pg_dsn, query, watch_id) == [("1.0", True)]
        assert len(thread.messages) == 1 and answers(thread) == []

        room.keep(thread)  # the chat is back, and a worker to copy
        workers("", MIRROR_WATCH_INTERVAL="1s")
        await until(lambda: len(answers(thread)) == 1, "the copy once the chat is back")
        assert first in answers(thread)[0]
        await until(lambda: not rows(pg_dsn, query, watch_id), "the sighting handled")


@pytest.mark.parametrize(
    ("interval", "tick", "cron"),
    [
        (0.5, 1, "* * * * * */1"),
        (1, 1, "* * * * * */1"),
        (7, 6, "* * * * * */6"),
        (45, 30, "* * * * * */30"),
        (60, 60, "* * * * *"),
        (21600, 60, "* * * * *"),
    ],
)
def test_the_periodic_tick_is_the_floor_of_the_interval(
    interval: float, tick: int, cron: str
) -> None:
    assert tick_of(interval) == tick
    assert cron_of(tick) == cron
