"""Retention (issue 26): ``mirror-bot prune`` and MIRROR_RETENTION's daily run delete at the
target, by digest, the copies nobody asked for in a while, against the lab's real registries
(deletion on, and a registry with it off), with a real SQLite store and a real PostgreSQL one.

A copy's age is its last request as the store recorded it; the tests write that time back
into the store (nobody sleeps thirty days) and run prune at a given ``now``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

import lab as lab_module
from bot.app import MirrorBot
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings
from mirror.models import ItemStatus, Job, Watch, new_job_id
from mirror.naming import parse_image_spec
from mirror.reference import parse_reference
from mirror.retention import CHORE, DAY, Outcome, Pin, Verdict, prune, prune_if_due
from mirror.store import open_store
from tests.support.cli import MIRROR_BOT, bot_env, run_mirror
from tests.test_app import PLATFORM, finish, say

MONTH = 30 * DAY


def settings_for(db: Path | str, target: str, *sources: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=db,
        mirror_target=target,
        mirror_engine="registry",
        mirror_allowed_sources=sources,
        mirror_insecure_registries=(*sources, target.split("/")[0]),
        mirror_admins=(f"{PLATFORM}:carol",),
    )


@asynccontextmanager
async def runtime_for(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as runtime:
        yield runtime


async def copy(runtime: Runtime, *images: str, requester: str = f"{PLATFORM}:alice") -> Job:
    """Mirror ``images`` as one job and wait for it; every image must land."""
    specs = [parse_image_spec(image) for image in images]
    items = runtime.planner.plan(specs, runtime.planner.default_platform, explicit=False)
    job = Job(new_job_id(), requester, f"{PLATFORM}:room", items)
    await (await runtime.service.submit(job, lambda _: None))
    for item in job.items:
        assert item.status is ItemStatus.SUCCEEDED, item.error
    return job


def age(db: Path, job: Job, seconds: float) -> None:
    """Make the job's images last asked for ``seconds`` ago (SQLite)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE items SET updated = ? WHERE job_id = ?", (time.time() - seconds, job.id)
        )


def exists(registry: str, repository: str, reference: str) -> bool:
    try:
        lab_module.pull_manifest(registry, repository, reference)
    except lab_module.RegistryError as exc:
        assert exc.status == 404, exc
        return False
    return True


def where(job: Job) -> tuple[str, str, str]:
    """(registry, repository, tag) of the job's first image's copy."""
    target = job.items[0].target
    assert target.tag is not None
    return target.registry, target.repository, target.tag


async def test_prune_deletes_old_copies_by_digest_and_keeps_pinned_watched_and_shared(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    settings = settings_for(db, f"{lab.target}/p{uuid.uuid4().hex[:8]}", lab.source)
    moving = f"library/moving-{uuid.uuid4().hex[:8]}"
    first = lab_module.push_image(lab.source, moving, "1", [lab_module.LayerSpec(1024, 301)])
    app = f"{lab.source}/library/app"
    async with runtime_for(settings) as runtime:
        store = runtime.store
        hello = await copy(runtime, f"{lab.source}/library/hello:1.0")
        old_app = await copy(runtime, f"{app}:1.0.0")  # every app tag is one manifest:
        new_app = await copy(runtime, f"{app}:1.0.1")  # one digest, two tags
        multi = await copy(runtime, f"{lab.source}/library/multi:1.0")
        watched_before = await copy(runtime, f"{lab.source}/{moving}:1")
        moved = lab_module.push_image(lab.source, moving, "1", [lab_module.LayerSpec(1024, 302)])
        watched_now = await copy(runtime, f"{lab.source}/{moving}:1")
        for job in (hello, old_app, multi, watched_before, watched_now):
            age(db, job, 40 * DAY)
        await store.add_pin(Pin(str(multi.items[0].source), f"{PLATFORM}:alice"))
        await store.add_watch(
            Watch(
                "w1",
                f"{PLATFORM}:alice",
                f"{PLATFORM}:room",
                parse_reference(f"{lab.source}/{moving}").repo_only,
                "1",
                runtime.planner.default_platform,
            )
        )
        client = runtime.service.engines.remote.client

        planned = await prune(store, client, MONTH, dry_run=True)
        shown = {(line.step.copy.shown, line.outcome, line.step.verdict) for line in planned.lines}
        moving_target = watched_now.items[0].target
        assert shown == {
            (_shown(hello), Outcome.PLANNED, Verdict.DELETE),
            (_shown(old_app), Outcome.KEPT, Verdict.SHARED),
            (_shown(multi), Outcome.KEPT, Verdict.PINNED),
            (_shown(watched_now), Outcome.KEPT, Verdict.WATCHED),
            (_shown(watched_before), Outcome.PLANNED, Verdict.DELETE),
        }
        assert watched_before.items[0].target_digest == first
        assert watched_now.items[0].target_digest == moved
        shared = next(line for line in planned.lines if line.step.verdict is Verdict.SHARED)
        assert shared.reason == f"its digest is still tagged `{_tag(new_app)}`"
        at = (moving_target.registry, moving_target.repository)
        assert exists(*where(hello)) and exists(*at, first)

        done = await prune(store, client, MONTH)
        assert done.ok and not done.refused and done.deleted == 2
        assert not exists(*where(hello))
        assert not exists(*at, first)
        assert exists(*where(watched_now))  # the tag still points at the watched copy
        assert exists(*where(old_app)) and exists(*where(new_app)) and exists(*where(multi))
        assert await store.last_success(str(hello.items[0].target)) is None
        left = {copy.shown for copy in await store.copies_made()}
        assert _shown(hello) not in left and _shown(old_app) in left

        # A later request copies it again: the pruned row is not "already mirrored".
        again = await copy(runtime, f"{lab.source}/library/hello:1.0")
        assert again.items[0].status is ItemStatus.SUCCEEDED and exists(*where(hello))

        # Unpinned, old enough, and nothing tags its digest any more: it goes too, as does
        # everything with --older-than 0s, the fresh copies included.
        await store.remove_pin(str(multi.items[0].source))
        everything = await prune(store, client, 0.0)
        assert everything.ok
        kept = {line.step.copy.shown for line in everything.lines if line.outcome is Outcome.KEPT}
        assert kept == {_shown(watched_now)}
        assert not exists(*where(multi)) and not exists(*where(new_app))


def _shown(job: Job) -> str:
    item = job.items[0]
    return f"{item.target.name}:{item.target.tag}@{item.target_digest}"


def _tag(job: Job) -> str:
    item = job.items[0]
    return f"{item.target.name}:{item.target.tag}"


@pytest.fixture(scope="module")
def no_delete(lab: lab_module.Lab) -> str:
    """A registry that refuses to delete manifests (405), as distribution does by default."""
    return lab.start_plain_registry(f"nodelete-{uuid.uuid4().hex[:6]}", delete=False)


async def test_a_target_that_refuses_deletion_is_one_sentence_and_nothing_is_marked(
    lab: lab_module.Lab, no_delete: str, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    settings = settings_for(db, f"{no_delete}/keep", lab.source)
    async with runtime_for(settings) as runtime:
        hello = await copy(runtime, f"{lab.source}/library/hello:1.0")
        report = await prune(runtime.store, runtime.service.engines.remote.client, 0.0)
        assert not report.ok and report.deleted == 0
        assert report.refused == [
            f"`{no_delete}` refuses to delete manifests (HTTP 405), so nothing was pruned "
            "there; enable deletion in that registry (distribution: storage.delete.enabled) "
            "or delete the copies by hand."
        ]
        assert exists(*where(hello))
        assert [c.shown for c in await runtime.store.copies_made()] == [_shown(hello)]
        assert await runtime.store.last_success(str(hello.items[0].target)) is not None


def prune_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRROR_BOT, "prune", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_prune_command_lists_deletes_and_names_a_refusal(
    lab: lab_module.Lab, no_delete: str, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "cli.db", MIRROR_TARGET=f"{lab.target}/c{uuid.uuid4().hex[:8]}")
    image = f"{lab.source}/library/hello:1.0"
    assert run_mirror(env, image).returncode == 0

    needs = prune_cli(env)
    assert needs.returncode == 2
    assert needs.stderr.strip() == (
        "Say how long a copy may go unasked before it is pruned: --older-than 30d (or set "
        "MIRROR_RETENTION)."
    )
    bad = prune_cli(env, "--older-than", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("--older-than: write it as")
    short = prune_cli({**env, "MIRROR_RETENTION": "2h"})
    assert short.returncode == 2 and short.stderr.startswith("MIRROR_RETENTION: keep copies")

    recent = prune_cli({**env, "MIRROR_RETENTION": "30d"}, "--dry-run")
    assert recent.returncode == 0 and recent.stdout == ""
    assert recent.stderr.strip() == "0 would be deleted, 0 kept"
    listed = prune_cli(env, "--older-than", "0s", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert (
        listed.stdout.startswith("would delete: ") and ".library.hello:1.0@sha256:" in listed.stdout
    )
    assert listed.stderr.strip() == "1 would be deleted, 0 kept"
    deleted = prune_cli(env, "--older-than", "0s")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith("deleted: ") and deleted.stderr.strip() == "1 deleted, 0 kept"

    refusing = bot_env(lab, tmp_path / "refusing.db", MIRROR_TARGET=f"{no_delete}/keep")
    refusing["MIRROR_INSECURE_REGISTRIES"] += f",{no_delete}"
    assert run_mirror(refusing, image).returncode == 0
    refused = prune_cli(refusing, "--older-than", "0s")
    assert refused.returncode == 1
    assert f"`{no_delete}` refuses to delete manifests (HTTP 405)" in refused.stderr


async def test_the_daily_run_happens_in_one_place_under_a_lock_with_postgres(
    lab: lab_module.Lab, pg_dsn: str
) -> None:
    settings = settings_for(pg_dsn, f"{lab.target}/q{uuid.uuid4().hex[:8]}", lab.source)
    async with runtime_for(settings) as runtime:
        hello = await copy(runtime, f"{lab.source}/library/hello:1.0")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE items SET updated = %s", (time.time() - 40 * DAY,))
        client = runtime.service.engines.remote.client
        one, two = await open_store(pg_dsn), await open_store(pg_dsn)
        try:
            # Another front holds the lock: this one does not run, and nothing is recorded.
            async with one.exclusive(CHORE) as held:
                assert held
                assert await prune_if_due(two, client, MONTH, time.time()) is None
                async with two.exclusive(CHORE) as also:
                    assert not also
            assert await two.last_run(CHORE) is None and exists(*where(hello))

            # Two fronts at once: exactly one prunes; the other finds it locked or done.
            now = time.time()
            reports = await asyncio.gather(
                prune_if_due(one, client, MONTH, now), prune_if_due(two, client, MONTH, now)
            )
            ran = [report for report in reports if report is not None]
            assert len(ran) == 1 and ran[0].deleted == 1
            assert not exists(*where(hello))
            assert await one.last_run(CHORE) == now
            assert await prune_if_due(one, client, MONTH, now + DAY / 2) is None  # not due
            later = await prune_if_due(two, client, MONTH, now + DAY)
            assert later is not None and later.lines == []
        finally:
            await one.close()
            await two.close()


# -- /pin and /unpin -------------------------------------------------------------------------


@asynccontextmanager
async def chat_bot(settings: Settings) -> AsyncIterator[MirrorBot]:
    async with (
        open_runtime(settings) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            runtime.lookups,
        ) as bot,
    ):
        yield bot


async def answer(bot: MirrorBot, user: str, text: str) -> str:
    thread = await say(bot, user, "room", text)
    await finish(bot)
    return thread.messages[-1].text


async def test_pins_are_for_admins_and_the_image_s_requesters(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path / "bot.db", f"{lab.target}/n{uuid.uuid4().hex[:8]}", lab.source
    )
    image = f"{lab.source}/library/hello:1.0"
    async with chat_bot(settings) as bot:
        nothing = await answer(bot, "alice", f"/pin {image}")
        assert nothing == f"`{image}` has no copy here; mirror it first."
        assert "done" in await answer(bot, "alice", f"/mirror {image}")

        refused = await answer(bot, "bob", f"/pin {image}")
        assert refused == f"Only an admin or someone who asked for `{image}` may pin or unpin it."
        pinned = await answer(bot, "alice", f"/pin {image}")
        assert pinned == (
            f"Pinned `{image}`: pruning keeps its current copy until someone sends "
            f"`/unpin {image}`."
        )
        target = (await bot.service.store.copies_of(str(parse_reference(image))))[0][0].target
        again = await answer(bot, "carol", f"/pin {target.name}:{target.tag}")  # its copy's name
        assert again == f"`{image}` is pinned already."
        assert [pin.source for pin in await bot.service.store.pins()] == [
            str(parse_reference(image))
        ]
        assert await answer(bot, "bob", f"/unpin {image}") == refused
        unpinned = await answer(bot, "carol", f"/mirror unpin {image}")
        assert unpinned.startswith(f"Unpinned `{image}`")
        assert await answer(bot, "alice", f"/unpin {image}") == f"`{image}` is not pinned."
        assert await bot.service.store.pins() == []
        usage = await answer(bot, "alice", "/pin")
        assert usage.startswith("`/pin` needs exactly one image")
