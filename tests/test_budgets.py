"""Budgets (issue 26): MIRROR_QUOTA per person over calendar windows in UTC, and
MIRROR_TARGET_MAX_REPOS, through the bot (``MirrorBot.handle``, the lab's real registries, a
real SQLite store) and the store itself on SQLite and PostgreSQL.

Time is the job service's clock, moved by the test: a window renews without sleeping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import lab as lab_module
from bot.app import MirrorBot
from bot.runtime import Role, open_runtime
from bot.settings import Settings, describe
from mirror.models import Item, ItemStatus, Job
from mirror.naming import parse_image_spec
from mirror.platform import DEFAULT_PLATFORM
from mirror.quota import (
    Budget,
    CapacityReached,
    Measure,
    Quota,
    QuotaExceeded,
    Reservation,
    Rule,
    Usage,
    Window,
)
from mirror.reference import parse_reference
from mirror.store import Store, open_store
from tests.support.cli import Workers
from tests.test_app import PLATFORM, finish, say

MONDAY_LATE = datetime(2026, 5, 4, 23, 59, tzinfo=UTC).timestamp()  # a Monday, 23:59 UTC
TUESDAY = datetime(2026, 5, 5, 0, 0, 1, tzinfo=UTC).timestamp()
WEDNESDAY = datetime(2026, 5, 6, 12, 0, tzinfo=UTC).timestamp()
NEXT_MONDAY = datetime(2026, 5, 11, 0, 0, 1, tzinfo=UTC).timestamp()


# -- the rules ------------------------------------------------------------------------------


def test_windows_are_calendar_days_and_weeks_from_monday_in_utc() -> None:
    sunday_night = datetime(2026, 5, 10, 23, 30, tzinfo=UTC).timestamp()
    assert Window.DAY.start(MONDAY_LATE) == datetime(2026, 5, 4, tzinfo=UTC).timestamp()
    assert Window.DAY.renews(MONDAY_LATE) == datetime(2026, 5, 5, tzinfo=UTC).timestamp()
    assert Window.WEEK.start(WEDNESDAY) == datetime(2026, 5, 4, tzinfo=UTC).timestamp()
    assert Window.WEEK.start(sunday_night) == datetime(2026, 5, 4, tzinfo=UTC).timestamp()
    assert Window.WEEK.renews(sunday_night) == datetime(2026, 5, 11, tzinfo=UTC).timestamp()
    assert Window.WEEK.start(NEXT_MONDAY) == datetime(2026, 5, 11, tzinfo=UTC).timestamp()


def settings_of(**values: Any) -> Settings:
    """Settings as the environment gives them: text."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def quota_of(text: str) -> Quota:
    value = settings_of(mirror_quota=text).mirror_quota
    assert value is not None
    return value


def test_a_quota_reads_images_and_sizes_per_day_and_week() -> None:
    quota = quota_of("20 images/day, 10GB/week, 1 image/week")
    assert quota.rules == (
        Rule(20, Measure.IMAGES, Window.DAY),
        Rule(10_000_000_000, Measure.BYTES, Window.WEEK),
        Rule(1, Measure.IMAGES, Window.WEEK),
    )
    assert quota.counts_bytes and quota.windows == (Window.DAY, Window.WEEK)
    assert not quota_of("3 images/day").counts_bytes
    assert settings_of(mirror_quota="off").mirror_quota is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("20 images/month", "`20 images/month` is not a quota rule"),
        ("20 images", "`20 images` is not a quota rule"),
        ("many/day", "`many/day` is not a quota rule"),
        ("0 images/day", "`0 images/day` allows nothing"),
        ("1 image/day, 2 images/day", "`2 images/day` repeats a rule"),
    ],
)
def test_a_bad_quota_is_one_sentence_naming_it(value: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_of(mirror_quota=value)
    sentence = describe(caught.value)
    assert sentence.startswith(f"MIRROR_QUOTA: {words}"), sentence
    assert sentence.endswith(".") and "\n" not in sentence


def test_a_bad_capacity_is_one_sentence_naming_it() -> None:
    with pytest.raises(ValidationError) as caught:
        settings_of(mirror_target_max_repos="0")
    assert describe(caught.value).startswith("MIRROR_TARGET_MAX_REPOS: ")


def test_going_over_says_which_rule_and_when_it_renews() -> None:
    quota = quota_of("2 images/day, 1GB/week")
    quota.check({Window.DAY: Usage(1, 0)}, 1, 0, MONDAY_LATE)  # the last image fits
    with pytest.raises(QuotaExceeded) as over:
        quota.check({Window.DAY: Usage(2, 0)}, 1, 0, MONDAY_LATE)
    assert str(over.value) == (
        "You have used 2 of your quota of 2 images/day (MIRROR_QUOTA); it renews at "
        "2026-05-05 00:00 UTC, and nothing was copied."
    )
    with pytest.raises(QuotaExceeded) as over:
        quota.check({Window.WEEK: Usage(1, 900_000_000)}, 1, 200_000_000, WEDNESDAY)
    assert "1.0 GB/week" in str(over.value) and "2026-05-11 00:00 UTC" in str(over.value)


# -- through the bot ------------------------------------------------------------------------


def budget_settings(tmp_path: Path, lab: lab_module.Lab, **more: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=tmp_path / "bot.db",
        mirror_target=f"{lab.target}/b{uuid.uuid4().hex[:8]}",
        mirror_engine="registry",
        mirror_allowed_sources=(lab.source,),
        mirror_insecure_registries=(lab.source, lab.target),
        mirror_admins=(f"{PLATFORM}:carol",),
        **more,
    )


@asynccontextmanager
async def chat_bot(settings: Settings, now: list[float]) -> AsyncIterator[MirrorBot]:
    """``mirror-bot run``'s runtime (people's quotas apply) with the clock ``now[0]``."""
    async with open_runtime(settings, role=Role.FRONT) as runtime:
        runtime.service.clock = lambda: now[0]
        async with MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            runtime.lookups,
        ) as bot:
            yield bot


async def ask(bot: MirrorBot, user: str, text: str) -> str:
    """The final answer to ``text`` (the job's last message, or the one answer)."""
    thread = await say(bot, user, "room", text)
    await finish(bot)
    return thread.messages[-1].text


async def test_a_quota_refuses_until_its_window_renews_and_counts_only_bytes_moved(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    now = [MONDAY_LATE]
    settings = budget_settings(tmp_path, lab, mirror_quota="1 image/day, 2 images/week")
    hello, app = f"{lab.source}/library/hello:1.0", f"{lab.source}/library/app"
    async with chat_bot(settings, now) as bot:
        missing = await ask(bot, "alice", f"/mirror {lab.source}/library/hello:no-such-tag")
        assert "failed" in missing  # a copy that fails gives its share back
        assert "done" in await ask(bot, "alice", f"/mirror {hello}")

        over = await ask(bot, "alice", f"/mirror {app}:1.0.0")
        assert (
            "You have used 1 of your quota of 1 image/day (MIRROR_QUOTA); it renews at "
            "2026-05-05 00:00 UTC, and nothing was copied."
        ) in over
        quota = await ask(bot, "alice", "/quota")
        assert "1 image/day: 1 used, 0 left" in quota, quota
        assert "renews at 2026-05-05 00:00 UTC" in quota
        assert "2 images/week: 1 used, 1 left" in quota and "2026-05-11 00:00 UTC" in quota

        # Someone else has their own; an admin has none.
        assert "done" in await ask(bot, "bob", f"/mirror {app}:1.0.0")
        assert "Admins have no quota" in await ask(bot, "carol", "/quota")
        assert "done" in await ask(bot, "carol", f"/mirror {app}:1.0.1")
        assert "done" in await ask(bot, "carol", f"/mirror {app}:1.0.2")

        now[0] = TUESDAY  # a new day: the day's rule renews, the week's does not
        assert "already mirrored" in await ask(bot, "alice", f"/mirror {app}:1.0.0")
        assert "done" in await ask(bot, "alice", f"/mirror {app}:1.0.3")

        now[0] = WEDNESDAY
        over = await ask(bot, "alice", f"/mirror {app}:1.0.4")
        assert "quota of 2 images/week" in over and "2026-05-11 00:00 UTC" in over
        # Nothing would move: an image already there is answered, whatever is left.
        assert "already mirrored" in await ask(bot, "alice", f"/mirror {hello}")

        now[0] = NEXT_MONDAY
        assert "done" in await ask(bot, "alice", f"/mirror {app}:1.0.4")
        quota = await ask(bot, "alice", "/quota")
        assert "1 image/day: 1 used, 0 left" in quota and "2 images/week: 1 used" in quota

    none = budget_settings(tmp_path / "other", lab)
    async with chat_bot(none, now) as bot:
        assert "sets no quota" in await ask(bot, "alice", "/quota")


async def test_the_target_s_room_is_counted_from_the_store_and_shown_by_status(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = budget_settings(tmp_path, lab, mirror_target_max_repos=2)
    now = [MONDAY_LATE]
    app = f"{lab.source}/library/app"
    async with chat_bot(settings, now) as bot:
        assert "done" in await ask(bot, "alice", f"/mirror {lab.source}/library/hello:1.0")
        assert "done" in await ask(bot, "alice", f"/mirror {app}:1.0.0")
        # Another tag of a repository it holds is no new repository; admins are no exception.
        assert "done" in await ask(bot, "alice", f"/mirror {app}:1.0.1")
        refused = await ask(bot, "carol", f"/mirror {lab.source}/library/multi:1.0")
        source = lab.source.replace(":", "-")
        assert (
            "The target already holds 2 repositories, and MIRROR_TARGET_MAX_REPOS allows 2: "
            f"`{settings.mirror_target}/{source}.library.multi` would be one more, so nothing "
            "was copied."
        ) in refused, refused
        status = await ask(bot, "alice", "/status")
        assert "repositories 2 of 2" in status


# -- concurrent requests, on both databases -----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return tmp_path / "store.db"


async def stored_job(store: Store, person: str, count: int, repository: str | None = None) -> Job:
    items = [
        Item(
            "app",
            parse_reference("docker.io/library/app:1"),
            parse_reference(f"127.0.0.1:5000/m/{repository or f'r{i}'}:1"),
            DEFAULT_PLATFORM,
        )
        for i in range(count)
    ]
    job = Job(f"j{uuid.uuid4().hex[:6]}", person, "test:room", items)
    await store.add_job(job)
    return job


async def claim(store: Store, job: Job, idx: int, budget: Budget) -> bool:
    item = job.items[idx]
    reservation = Reservation(job.id, idx, job.requester, item.target.name, 0, MONDAY_LATE)
    try:
        await store.reserve(reservation, budget, MONDAY_LATE)
    except (QuotaExceeded, CapacityReached):
        return False
    return True


async def test_concurrent_requests_cannot_overspend_a_quota(location: Path | str) -> None:
    """Two processes (two stores on one database) claim at once: exactly the quota wins."""
    one, two = await open_store(location), await open_store(location)
    try:
        budget = Budget(quota=quota_of("3 images/day"))
        job = await stored_job(one, "test:alice", 12, repository="same")
        won = await asyncio.gather(
            *(claim(one if i % 2 else two, job, i, budget) for i in range(12))
        )
        assert sum(won) == 3
        assert await one.usage("test:alice", Window.DAY.start(MONDAY_LATE)) == Usage(3, 0)
        # A claim made before a restart stands (the same item claims again after it).
        first = won.index(True)
        assert await claim(two, job, first, budget)

        # The target's room, claimed at once by six people for six new repositories, where
        # there is room for two more ("same" above is one).
        room = Budget(max_repos=3)
        people = [await stored_job(one, f"test:p{i}", 1, f"new{i}") for i in range(6)]
        won = await asyncio.gather(
            *(claim(one if i % 2 else two, job, 0, room) for i, job in enumerate(people))
        )
        assert sum(won) == 2 and await one.repository_count() == 3
        again = await stored_job(one, "test:q", 1, "same")  # no new repository: room enough
        assert await claim(two, again, 0, room)
    finally:
        await one.close()
        await two.close()


async def test_what_failed_is_given_back_and_what_moved_bytes_counts(location: Path | str) -> None:
    store = await open_store(location)
    try:
        budget = Budget(quota=quota_of("2 images/day, 1MB/day"))
        job = await stored_job(store, "test:alice", 3, repository="same")
        since = Window.DAY.start(MONDAY_LATE)
        assert await claim(store, job, 0, budget) and await claim(store, job, 1, budget)
        assert not await claim(store, job, 2, budget)
        first, second = (
            Reservation(job.id, i, job.requester, "127.0.0.1:5000/m/same", 0, MONDAY_LATE)
            for i in (0, 1)
        )
        await store.settle(first, None)  # failed: nothing moved
        assert await store.usage("test:alice", since) == Usage(1, 0)
        await store.settle(second, 900_000)
        assert await store.usage("test:alice", since) == Usage(1, 900_000)
        big = Reservation(job.id, 2, job.requester, "127.0.0.1:5000/m/same", 200_000, MONDAY_LATE)
        with pytest.raises(QuotaExceeded, match=r"900\.0 KB of your quota of 1\.0 MB/day"):
            await store.reserve(big, budget, MONDAY_LATE)
    finally:
        await store.close()


async def test_a_queue_front_reserves_before_it_queues(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers
) -> None:
    """PostgreSQL + workers: the front claims each copy's share before the workers get it;
    two images asked at once with one left: one is copied, the other refused."""
    workers()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=pg_dsn,
        mirror_target=f"{lab.target}/q{uuid.uuid4().hex[:8]}",
        mirror_engine="docker",  # the front cannot copy: the workers do
        docker_host="unix:///nonexistent/docker.sock",
        mirror_allowed_sources=(lab.source,),
        mirror_insecure_registries=(lab.source, lab.target),
        mirror_quota=quota_of("1 image/day"),
    )
    async with open_runtime(settings, role=Role.FRONT) as runtime:
        runtime.service.clock = lambda: MONDAY_LATE
        specs = [
            parse_image_spec(f"{lab.source}/library/hello:1.0"),
            parse_image_spec(f"{lab.source}/library/app:1.0.0"),
        ]
        items = runtime.planner.plan(specs, DEFAULT_PLATFORM, explicit=True)
        job = Job(f"j{uuid.uuid4().hex[:6]}", "test:alice", "test:room", items)
        await asyncio.wait_for(await runtime.service.submit(job, lambda _: None), 120)
    statuses = sorted(item.status.value for item in job.items)
    assert statuses == ["failed", "succeeded"], [item.error for item in job.items]
    refused = next(item for item in job.items if item.status is ItemStatus.FAILED)
    assert refused.error is not None and "quota of 1 image/day" in refused.error
    assert next(i for i in job.items if i.status is ItemStatus.SUCCEEDED).engine == "registry"
