"""The bot in-process, through ``MirrorBot.handle``, as every adapter drives it.

The conversation here is an in-memory implementation of our own chat port that keeps what
the bot posted and edited (a chat of our own, not a stand-in for what is tested); the store is a
real SQLite file, and a job that must run copies between the lab's real registries.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import lab as lab_module
from bot import actions
from bot.app import MirrorBot
from bot.chat import Incoming, Press, Undeliverable
from bot.commands import Commands
from bot.following import NOT_ACKNOWLEDGED
from bot.runtime import open_runtime
from bot.settings import Settings, parse_rate
from bot.view import MessageView, to_plain_text
from mirror.models import ItemStatus, Job
from mirror.naming import parse_image_spec
from mirror.store import STORE_DOWN
from tests.support.throttle import throttled

PLATFORM = "test"


@dataclass
class Message:
    ref: str
    views: list[MessageView]

    @property
    def text(self) -> str:
        return to_plain_text(self.views[-1])

    async def edit(self, view: MessageView) -> None:
        self.views.append(view)


@dataclass
class Thread:
    """Where one command's answers go; ``before_post`` may look at the world or refuse."""

    messages: list[Message] = field(default_factory=list)
    before_post: Callable[[MessageView], Awaitable[None]] | None = None

    @property
    def edit_interval(self) -> float:
        return 0.0

    async def post(self, view: MessageView) -> Message:
        if self.before_post is not None:
            await self.before_post(view)
        message = Message(str(len(self.messages) + 1), [view])
        self.messages.append(message)
        return message

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


def settings_for(tmp_path: Path, target: str, *sources: str, **more: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=tmp_path / "bot.db",
        mirror_target=f"{target}/app",
        mirror_engine="registry",
        mirror_allowed_sources=(*sources, "docker.io"),
        mirror_insecure_registries=(*sources, target),
        mirror_admins=(f"{PLATFORM}:carol",),
        **more,
    )


@asynccontextmanager
async def running_bot(
    settings: Settings, *, asks: bool = False, commands: Commands | None = None
) -> AsyncIterator[MirrorBot]:
    async with (
        open_runtime(settings, asks=asks) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            commands=commands,
        ) as bot,
    ):
        yield bot


async def say(
    bot: MirrorBot, user: str, chat: str, text: str, thread: Thread | None = None
) -> Thread:
    thread = thread or Thread()
    await bot.handle(Incoming(PLATFORM, user, user, chat, text), thread)
    return thread


def job_id_of(thread: Thread) -> str:
    match = re.match(r"Job (\w{6}): mirroring", thread.texts[0])
    assert match, thread.texts
    return match.group(1)


def started(bot: MirrorBot, job_id: str) -> bool:
    """Running, or already over (then the cancel below says why it could not be cancelled)."""
    job = bot.service.active(job_id)
    return job is None or job.items[0].status is not ItemStatus.QUEUED


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(60):
        while not condition():
            await asyncio.sleep(0.05)


async def finish(bot: MirrorBot) -> None:
    """Until every job's final answer is delivered."""
    await bot.drain(asyncio.Event())


async def test_only_the_requester_or_an_admin_may_cancel(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    with throttled(lab.source, rate=64 * 1024) as slow:
        settings = settings_for(tmp_path, lab.target, slow.address)
        async with running_bot(settings) as bot:
            image = f"/mirror {slow.address}/library/multi:1.0"
            first = await say(bot, "alice", "room1", image)
            first_id = job_id_of(first)

            refused = await say(bot, "bob", "room1", f"/cancel {first_id}")
            assert refused.texts == [f"Only the requester or an admin may cancel job {first_id}."]
            assert bot.service.active(first_id) is not None

            by_requester = await say(bot, "alice", "room1", f"/cancel {first_id}")
            assert by_requester.texts == [f"Job {first_id} cancelled."]

            # The first was cancelled before it began; this one while it copies.
            second = await say(bot, "alice", "room1", image)
            second_id = job_id_of(second)
            await until(lambda: started(bot, second_id))
            by_admin = await say(bot, "carol", "room2", f"/cancel {second_id}")
            assert by_admin.texts == [f"Job {second_id} cancelled."], second.texts

            await finish(bot)
            for thread, job_id in ((first, first_id), (second, second_id)):
                assert f"Job {job_id} cancelled" in thread.texts[-1]
                stored = await bot.service.store.get_job(job_id)
                assert stored is not None
                assert [i.status for i in stored.items] == [ItemStatus.CANCELLED]


async def test_status_of_a_job_answers_only_in_its_own_chat(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    async with running_bot(settings_for(tmp_path, lab.target, lab.source)) as bot:
        store = bot.service.store
        stored_when_told: list[Job | None] = []

        async def look_in_the_store(view: MessageView) -> None:
            match = re.match(r"Job (\w{6}): mirroring", to_plain_text(view))
            if match:
                stored_when_told.append(await store.get_job(match.group(1)))

        asked = await say(
            bot,
            "alice",
            "room1",
            f"/mirror {lab.source}/library/hello:1.0",
            Thread(before_post=look_in_the_store),
        )
        job_id = job_id_of(asked)
        await finish(bot)
        assert f"Job {job_id} done: 1 image ready" in asked.texts[-1]
        # The job was in the store before the acknowledgement was posted, and where that
        # acknowledgement is (to resume it after a restart) was stored too.
        assert [job.id if job else None for job in stored_when_told] == [job_id]
        stored = await store.get_job(job_id)
        assert stored is not None and stored.reply_ref == f"{PLATFORM}:1"

        elsewhere = await say(bot, "alice", "room2", f"/status {job_id}")
        assert elsewhere.texts == [f"There is no job `{job_id}` in this chat."]
        here = await say(bot, "bob", "room1", f"/status {job_id}")
        assert f"Job {job_id} done: 1 image ready" in here.texts[0]


async def test_the_daemons_digest_note_is_said_once_per_chat(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """A copy through the daemon has another digest: the answer says so every time, and why
    (and how to get an exact copy) the first time in each chat, not on every answer."""
    registry = settings_for(tmp_path, lab.target, lab.source)
    fresh = f"{lab.target}/note{uuid.uuid4().hex[:8]}"  # never copied exactly by another test
    settings = registry.model_copy(
        update={"mirror_engine": "docker", "docker_host": lab.docker_host, "mirror_target": fresh}
    )
    why = "rebuilt the manifest"
    async with running_bot(settings) as bot:
        answers = []
        for chat in ("room1", "room1", "room2"):
            thread = await say(bot, "alice", chat, f"/mirror {lab.source}/library/hello:1.0")
            await finish(bot)
            answers.append(thread.texts[-1])
    for answer in answers:
        assert "digest differs from the source" in answer, answer
    assert [why in answer for answer in answers] == [True, False, True], answers


@pytest.mark.slow  # waits out the busy timeout
async def test_a_locked_store_is_one_sentence_and_nothing_starts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    async with running_bot(settings) as bot:
        holder = sqlite3.connect(settings.mirror_db, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            thread = await say(bot, "alice", "room1", "/mirror 127.0.0.1:5998/library/hello:1.0")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert thread.texts == [STORE_DOWN]
        assert len(thread.messages[0].views) == 1  # and nothing edits it later
        assert bot.service.in_flight == 0
        assert await bot.service.store.recent_jobs(f"{PLATFORM}:room1") == []


async def test_a_bare_pull_line_is_a_request_in_a_private_chat_not_in_a_group(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    line = "docker pull 127.0.0.1:5998/library/hello:1.0"
    async with running_bot(settings) as bot:
        private = Thread()
        await bot.handle(Incoming(PLATFORM, "alice", "alice", "alice", line), private)
        group = Thread()
        await bot.handle(Incoming(PLATFORM, "bob", "bob", "room1", line, is_group=True), group)
        await finish(bot)
    acknowledgement = to_plain_text(private.messages[0].views[0])
    assert re.match(r"Job \w{6}: mirroring 1 image", acknowledgement), acknowledgement
    assert f"read `{line}` as `127.0.0.1:5998/library/hello:1.0`" in acknowledgement
    assert group.texts[0].startswith("`docker` is not a command I know."), group.texts


async def test_a_refused_acknowledgement_leaves_a_failed_job_that_never_ran(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    async with running_bot(settings) as bot:

        async def refuse(view: MessageView) -> None:
            raise Undeliverable("the bot was removed from the chat", "kicked")

        thread = await say(
            bot,
            "alice",
            "room1",
            "/mirror 127.0.0.1:5998/library/hello:1.0",
            Thread(before_post=refuse),
        )
        assert thread.texts == []
        assert bot.service.in_flight == 0
        [job] = await bot.service.store.recent_jobs(f"{PLATFORM}:room1")
        assert job.reply_ref is None
        assert [(i.status, i.error) for i in job.items] == [(ItemStatus.FAILED, NOT_ACKNOWLEDGED)]


async def test_recovery_fails_a_stored_job_that_never_got_its_reply_handle(
    tmp_path: Path,
) -> None:
    """The bot stopped between storing a job and storing where it told the chat: the job
    never started, so it is failed (and /status says why), not resumed or left queued."""
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    async with running_bot(settings) as bot:
        items = bot.planner.plan(
            [parse_image_spec("127.0.0.1:5998/library/hello:1.0")], None, explicit=False
        )
        await bot.service.store.add_job(Job("orphan", "test:alice", "test:room1", items))

        assert await bot.recover({}) == 0
        stored = await bot.service.store.get_job("orphan")
        assert stored is not None
        assert [(i.status, i.error) for i in stored.items] == [
            (ItemStatus.FAILED, NOT_ACKNOWLEDGED)
        ]
        status = await say(bot, "alice", "room1", "/status orphan")
        assert NOT_ACKNOWLEDGED in status.texts[0]


@pytest.mark.slow  # waits out the busy timeout
async def test_a_store_failing_right_after_the_acknowledgement_never_starts_the_job(
    tmp_path: Path,
) -> None:
    """Told, but where it was told could not be stored: the acknowledgement becomes the
    sentence, nothing runs, and the next start fails the job rather than leaving it queued."""
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    holder = sqlite3.connect(settings.mirror_db, isolation_level=None)

    async def lock_the_store(view: MessageView) -> None:
        holder.execute("BEGIN EXCLUSIVE")

    try:
        async with running_bot(settings) as bot:
            thread = await say(
                bot,
                "alice",
                "room1",
                "/mirror 127.0.0.1:5998/library/hello:1.0",
                Thread(before_post=lock_the_store),
            )
            assert len(thread.messages) == 1
            assert thread.messages[0].text == STORE_DOWN  # the acknowledgement, edited
            assert bot.service.in_flight == 0
            holder.execute("ROLLBACK")
            [job] = await bot.service.store.recent_jobs(f"{PLATFORM}:room1")
            assert job.reply_ref is None
            assert [i.status for i in job.items] == [ItemStatus.QUEUED]

        async with running_bot(settings) as restarted:
            assert await restarted.recover({}) == 0
            stored = await restarted.service.store.get_job(job.id)
            assert stored is not None
            assert [(i.status, i.error) for i in stored.items] == [
                (ItemStatus.FAILED, NOT_ACKNOWLEDGED)
            ]
    finally:
        holder.close()


async def press(bot: MirrorBot, user: str, chat: str, action_id: str, thread: Thread) -> list[str]:
    """Press a button as ``user``; returns what the bot told that user alone."""
    private: list[str] = []

    async def answer_privately(text: str) -> None:
        private.append(text)

    incoming = Incoming(PLATFORM, user, user, chat, "", press=Press(action_id, answer_privately))
    await bot.handle(incoming, thread)
    return private


async def test_a_pressed_button_is_a_request_under_the_same_policy(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """An admin may press the requester's Cancel; a pressed Retry counts against the
    requester's rate like a typed /mirror; a button from another chat is unknown there."""
    with throttled(lab.source, rate=64 * 1024) as slow:
        settings = settings_for(
            tmp_path, lab.target, slow.address, mirror_user_rate=parse_rate("1/hour")
        )
        async with running_bot(settings) as bot:
            missing = await say(bot, "alice", "room1", f"/mirror {slow.address}/library/nope:1")
            await finish(bot)
            [retry] = missing.messages[-1].views[-1].actions
            assert retry.label == "Retry"

            elsewhere = await press(bot, "alice", "room2", retry.id, Thread())
            assert elsewhere == [actions.UNKNOWN]
            limited = await press(bot, "alice", "room1", retry.id, missing)
            assert limited == []  # it ran, and was answered in the thread as typed
            assert "You may mirror 1 per hour and have 0 left" in missing.texts[-1]

            running = await say(bot, "bob", "room1", f"/mirror {slow.address}/library/multi:1.0")
            [cancel] = running.messages[0].views[0].actions
            by_alice = await press(bot, "alice", "room1", cancel.id, running)
            assert by_alice == [actions.not_yours(f"{PLATFORM}:bob")]
            job_id = job_id_of(running)
            assert bot.service.active(job_id) is not None
            assert await press(bot, "carol", "room1", cancel.id, running) == []
            assert running.texts[-1] == f"Job {job_id} cancelled."
            assert await press(bot, "carol", "room1", cancel.id, running) == [actions.USED]
            await finish(bot)
            assert running.messages[0].views[-1].actions == ()  # Cancel went away in place
