"""Watches (issue 15) through ``MirrorBot.handle``, against the lab's real registries.

A tag is moved in the source registry by pushing another manifest to it over the API; the
chat (our own in-memory implementation of the chat port, as in test_app) must be told with
the new, exact copy. The store is a real SQLite file, so a restart is a new bot on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import lab as lab_module
from bot.app import MirrorBot
from bot.commands import NoArguments, UsageError, parse_command
from bot.commands.unwatch import UnwatchArgs
from bot.commands.watch import WatchArgs
from bot.settings import Settings
from mirror.models import Watch
from mirror.watches import RegistryUpstream
from tests.support.faults import Fault, fault_proxy
from tests.test_app import PLATFORM, Message, Thread, running_bot, say, settings_for

INTERVAL = "1s"


@dataclass
class Room:
    """A chat adapter with one thread per watch announcement, reopened by its ref."""

    name: str = PLATFORM
    threads: dict[str, Thread] = field(default_factory=dict)

    def keep(self, thread: Thread) -> None:
        self.threads[thread.messages[0].ref] = thread

    async def serve(self, handler: Any) -> None:
        await asyncio.Event().wait()

    async def reopen(self, ref: str) -> tuple[Thread, Message] | None:
        thread = self.threads.get(ref)
        return (thread, thread.messages[0]) if thread else None


@asynccontextmanager
async def watching(settings: Settings, room: Room) -> AsyncIterator[MirrorBot]:
    async with running_bot(settings) as bot:
        bot.start_watching({PLATFORM: room}, RegistryUpstream(bot.service.engines))
        yield bot


def push(registry: str, repository: str, tag: str, seed: int) -> str:
    return lab_module.push_image(registry, repository, tag, [lab_module.LayerSpec(2048, seed)])


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(60):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def answers(thread: Thread) -> list[str]:
    """The final answers of the jobs in a watch's thread (the messages a job ended with)."""
    return [t for t in thread.texts if re.search(r"Job \w{6} (done|failed)|images ready", t)]


def target_digest(lab: lab_module.Lab, repository: str, tag: str) -> str:
    data, _ = lab_module.pull_manifest(lab.target, repository, tag)
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def test_a_moved_tag_is_mirrored_again_and_told_where_the_watch_was_made(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    repository = f"library/watched-{uuid.uuid4().hex[:8]}"
    first = push(lab.source, repository, "1.0", seed=101)
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_watch_interval=INTERVAL)
    room = Room()
    image = f"{lab.source}/{repository}:1.0"
    async with watching(settings, room) as bot:
        thread = await say(bot, "alice", "room1", f"/watch {image}")
        room.keep(thread)
        assert re.match(r"Watch (\w{6}): changes of `.+:1\.0`", thread.texts[0]), thread.texts
        watch_id = thread.texts[0].split()[1].rstrip(":")
        stored = await bot.service.store.get_watch(watch_id)
        assert stored is not None and stored.reply_ref == f"{PLATFORM}:1"

        # Mirrored now, in the watch's thread.
        await until(lambda: len(answers(thread)) == 1, "the first copy")
        assert first in answers(thread)[0]
        assert "previous copy" not in answers(thread)[0]  # the first check moved nothing
        # The announcement right above says it mirrors now: the first copy does not repeat it.
        assert not any(watch_id in text for text in thread.texts[1:]), thread.texts
        found = re.search(rf"{re.escape(lab.target)}/(\S+):1\.0 · ", answers(thread)[0])
        assert found, answers(thread)[0]
        target_repo = found.group(1)
        assert target_digest(lab, target_repo, "1.0") == first

        moved = push(lab.source, repository, "1.0", seed=102)
        assert moved != first
        await until(lambda: len(answers(thread)) == 2, "the copy after the move")
        told = answers(thread)[1]
        assert "moved upstream" in told
        assert moved in told and "digest identical to the source" in told
        assert f"{lab.target}/{target_repo}:1.0" in told  # the pull command
        # The copy the tag pointed at stays by digest until pruned: how to pull it.
        assert f"docker pull {lab.target}/{target_repo}@{first}" in told
        assert target_digest(lab, target_repo, "1.0") == moved

        listed = await say(bot, "bob", "room1", "/watches")
        assert watch_id in listed.texts[0] and moved in listed.texts[0]
        elsewhere = await say(bot, "bob", "room2", "/watches")
        assert elsewhere.texts == ["No watches in this chat; start one with /watch IMAGE."]

    # A restart: a new bot on the same store keeps the watch and still posts in its thread.
    async with watching(settings, room) as bot:
        listed = await say(bot, "alice", "room1", "/watches")
        assert watch_id in listed.texts[0]
        again = push(lab.source, repository, "1.0", seed=103)
        await until(lambda: len(answers(thread)) == 3, "the copy after the restart")
        assert again in answers(thread)[2]

        refused = await say(bot, "bob", "room1", f"/unwatch {watch_id}")
        assert refused.texts == [f"Only the requester or an admin may stop watch {watch_id}."]
        stopped = await say(bot, "alice", "room1", f"/unwatch {watch_id}")
        assert stopped.texts[0].startswith(f"Watch {watch_id} stopped")
        assert await bot.service.store.get_watch(watch_id) is None

        # Moved once more: nobody watches it. Another watch's checks show the loop went on.
        push(lab.source, repository, "1.0", seed=104)
        other_repo = f"library/other-{uuid.uuid4().hex[:8]}"
        push(lab.source, other_repo, "1.0", seed=105)
        other = await say(bot, "alice", "room1", f"/watch {lab.source}/{other_repo}:1.0")
        room.keep(other)
        other_id = other.texts[0].split()[1].rstrip(":")
        checks: set[float] = set()

        async def checked_twice() -> None:
            while len(checks) < 3:
                found = await bot.service.store.get_watch(other_id)
                if found is not None and found.last_check is not None:
                    checks.add(found.last_check)
                await asyncio.sleep(0.1)

        async with asyncio.timeout(60):
            await checked_twice()
        assert len(answers(thread)) == 3, thread.texts[-1]
        assert target_digest(lab, target_repo, "1.0") == again


async def test_a_filter_watch_mirrors_new_matching_tags_only(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    repository = f"library/filtered-{uuid.uuid4().hex[:8]}"
    push(lab.source, repository, "1.26.9", seed=201)
    push(lab.source, repository, "1.27.0", seed=202)
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_watch_interval=INTERVAL)
    room = Room()
    async with watching(settings, room) as bot:
        thread = await say(bot, "alice", "room1", f"/watch {lab.source}/{repository}:~1.27")
        room.keep(thread)
        assert "new tags matching" in thread.texts[0]
        await until(lambda: len(answers(thread)) == 1, "the first copy")
        assert ":1.27.0" in answers(thread)[0] and "1.26.9" not in answers(thread)[0]

        newer = push(lab.source, repository, "1.27.1", seed=203)
        push(lab.source, repository, "1.28.0", seed=204)  # outside ~1.27
        await until(lambda: len(answers(thread)) == 2, "the new matching tag")
        told = answers(thread)[1]
        assert "new tag upstream matching" in told and ":1.27.1" in told and newer in told
        assert "1.28.0" not in "\n".join(thread.texts)


async def test_a_pull_limit_pauses_a_watch_until_it_lifts(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    repository = f"library/limited-{uuid.uuid4().hex[:8]}"
    push(lab.source, repository, "1.0", seed=301)
    async with fault_proxy(lab.source) as proxy:
        limit = {"Retry-After": "3600", "RateLimit-Limit": "100;w=21600"}
        proxy.add(Fault("status", "/manifests/", "HEAD", times=-1, status=429, headers=limit))
        settings = settings_for(tmp_path, lab.target, proxy.address, mirror_watch_interval=INTERVAL)
        room = Room()
        async with watching(settings, room) as bot:
            thread = await say(bot, "alice", "room1", f"/watch {proxy.address}/{repository}:1.0")
            room.keep(thread)
            watch_id = thread.texts[0].split()[1].rstrip(":")
            paused: list[Watch] = []

            async def until_paused() -> None:
                while not paused:
                    found = await bot.service.store.get_watch(watch_id)
                    if found is not None and found.error:
                        paused.append(found)
                    await asyncio.sleep(0.05)

            async with asyncio.timeout(60):
                await until_paused()
            watch = paused[0]
            assert watch.error is not None and "pull limit" in watch.error
            assert watch.last_check is not None
            assert watch.next_check >= watch.last_check + 3000  # until it lifts, not 1 s
            heads = proxy.requests("HEAD", "/manifests/")
            assert len(heads) == 1, heads  # one check, no spinning
            listed = await say(bot, "alice", "room1", "/watches")
            assert "pull limit" in listed.texts[0]
            assert len(thread.messages) == 1  # nothing was mirrored or announced


async def test_watches_are_limited_per_chat_and_stored_before_they_are_told(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998", mirror_max_watches=1)
    async with running_bot(settings) as bot:
        store = bot.service.store
        seen: list[Watch | None] = []

        async def look(view: Any) -> None:
            match = re.match(r"Watch (\w{6})", view.title)
            seen.append(await store.get_watch(match.group(1)) if match else None)

        first = await say(
            bot, "alice", "room1", "/watch 127.0.0.1:5998/library/a:1.0", Thread(before_post=look)
        )
        assert [w.pattern if w else None for w in seen] == ["1.0"], first.texts
        over = await say(bot, "alice", "room1", "/watch 127.0.0.1:5998/library/b:1.0")
        assert over.texts[0].startswith("This chat already has 1 watches")
        assert len(await store.watches(f"{PLATFORM}:room1")) == 1
        refused = await say(bot, "alice", "room2", "/watch quay.io.evil/x:1")
        assert len(refused.texts) == 1 and "Watch" not in refused.texts[0]
        assert await store.watches(f"{PLATFORM}:room2") == []


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("/watch nginx", "watch", WatchArgs),
        ("/watch nginx:1.27.*", "watch", WatchArgs),
        ("/mirror watch ghcr.io/org/app:~1.2", "watch", WatchArgs),
        ("/watches", "watches", NoArguments),
        ("/mirror unwatch k3x9qa", "unwatch", UnwatchArgs),
    ],
)
def test_watch_commands_parse(text: str, name: str, expected: type) -> None:
    invocation = parse_command(text, default_platform=None, max_images=5)
    assert invocation is not None and invocation.command.name == name
    assert isinstance(invocation.args, expected)


def watch_args(text: str) -> WatchArgs:
    invocation = parse_command(text, default_platform=None, max_images=5)
    assert invocation is not None and isinstance(invocation.args, WatchArgs)
    return invocation.args


def test_a_watch_names_a_tag_or_a_filter() -> None:
    command = watch_args("/watch nginx:~1.27")
    assert (command.image.name, command.pattern) == ("docker.io/library/nginx", "~1.27")
    plain = watch_args("/watch localhost:5000/app")
    assert (plain.image.name, plain.pattern) == ("localhost:5000/app", "latest")
    for bad, sentence in (
        ("/watch nginx@sha256:" + "a" * 64, "A digest never moves"),
        ("/watch nginx redis", "Name one image"),
        ("/watch nginx$mine", "own name"),
        ("/unwatch", "exactly one watch id"),
    ):
        with pytest.raises(UsageError, match=re.escape(sentence)):
            parse_command(bad, default_platform=None, max_images=5)


@pytest.mark.parametrize(
    ("value", "seconds"), [("5s", 5.0), ("10m", 600.0), ("6h", 21600.0), ("1d", 86400.0)]
)
def test_the_watch_interval_reads_units(value: str, seconds: float) -> None:
    settings = Settings(_env_file=None, mirror_watch_interval=value)  # type: ignore[call-arg]
    assert settings.mirror_watch_interval == seconds


def test_a_bad_watch_interval_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.chat import ConfigurationError
    from bot.settings import load_settings

    monkeypatch.setenv("MIRROR_WATCH_INTERVAL", "soon")
    with pytest.raises(ConfigurationError, match=r"^MIRROR_WATCH_INTERVAL: write it as"):
        load_settings()
