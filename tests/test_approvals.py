"""Approval in chat (MIRROR_APPROVAL), approved sources and the audit, with real registries.

The bot runs in-process, as every adapter drives it (``MirrorBot.handle``), on a real SQLite
file or a real PostgreSQL database. Its chats are :class:`Chats`, an in-memory adapter of our
own port (posts kept, refs reopened after a restart, a chat or a person addressed by id), not
a stand-in for anything tested here. The unapproved source is the lab's source registry behind
a recording proxy: named by the operator (MIRROR_INSECURE_REGISTRIES), so approvable, but not
in MIRROR_ALLOWED_SOURCES, and the proxy shows that nothing reaches it before an approval.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import lab as lab_module
from bot.app import MirrorBot
from bot.approvals import HELD_FOR, check_admin_chat
from bot.chat import Addressable, ConfigurationError, Incoming, Press
from bot.runtime import Role, open_runtime
from bot.settings import Settings
from bot.view import MessageView, to_plain_text
from mirror.models import ItemStatus
from tests.support.cli import MIRROR_BOT, clean_env
from tests.support.faults import fault_proxy

PLATFORM = "test"
ADMIN = "carol"


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
class Room:
    """One thread of one chat: what the bot posted there."""

    chats: Chats
    name: str
    messages: list[Message] = field(default_factory=list)

    @property
    def edit_interval(self) -> float:
        return 0.0

    async def post(self, view: MessageView) -> Message:
        message = Message(str(next(self.chats.ids)), [view])
        self.messages.append(message)
        self.chats.refs[message.ref] = (self, message)
        return message

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    def find(self, words: str) -> Message | None:
        return next((m for m in self.messages if words in m.text), None)


class Chats:
    """An adapter of our port for the tests: threads by name, every message reopenable by its
    ref (as after a restart), admins' private chats and a chat addressed by id."""

    name = PLATFORM

    def __init__(self) -> None:
        import itertools

        self.ids = itertools.count(1)
        self.refs: dict[str, tuple[Room, Message]] = {}
        self.private: dict[str, Room] = {}
        self.rooms: dict[str, Room] = {}

    def room(self, name: str) -> Room:
        return Room(self, name)

    async def serve(self, handler: Any) -> None:
        await asyncio.Event().wait()

    async def reopen(self, ref: str) -> tuple[Room, Message] | None:
        return self.refs.get(ref)

    async def open_chat(self, chat_id: str) -> Room:
        return self.rooms.setdefault(chat_id, Room(self, chat_id))

    async def open_private(self, user_id: str) -> Room:
        return self.private.setdefault(user_id, Room(self, f"dm-{user_id}"))


def settings_for(
    tmp_path: Path, lab: lab_module.Lab, db: Path | str | None = None, **more: Any
) -> Settings:
    """Approval outside the allowlist; only docker.io is allowed, the lab's registries are
    named (so approvable) but not allowed."""
    values: dict[str, Any] = {
        "mirror_db": db if db is not None else tmp_path / "bot.db",
        "mirror_target": f"{lab.target}/ap{uuid.uuid4().hex[:8]}",  # nothing there yet
        "mirror_engine": "registry",
        "mirror_allowed_sources": ("docker.io",),
        "mirror_insecure_registries": (lab.source, lab.target),
        "mirror_admins": (f"{PLATFORM}:{ADMIN}",),
        "mirror_approval": "outside-allowlist",
        **more,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(
    settings: Settings, chats: Chats, *, role: Role = Role.ALONE
) -> AsyncIterator[MirrorBot]:
    async with (
        open_runtime(settings, asks=True, role=role) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
        ) as bot,
    ):
        adapters = {PLATFORM: chats}
        await bot.recover(adapters)
        await bot.start_approvals(adapters, runtime.queue.pool if runtime.queue else None)
        yield bot


async def say(bot: MirrorBot, user: str, room: Room, text: str) -> Room:
    await bot.handle(Incoming(PLATFORM, user, user.title(), room.name, text), room)
    return room


async def press(bot: MirrorBot, user: str, room: Room, action_id: str) -> list[str]:
    """Press a button in ``room``; what the presser alone was told."""
    told: list[str] = []

    async def privately(text: str) -> None:
        told.append(text)

    incoming = Incoming(PLATFORM, user, user, room.name, "", press=Press(action_id, privately))
    await bot.handle(incoming, room)
    return told


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while True:
            found = condition()
            if not isinstance(found, bool):
                found = await found
            if found:
                return
            await asyncio.sleep(0.05)


def job_of(room: Room) -> str:
    import re

    match = re.search(r"Job (\w{6})", room.texts[0])
    assert match, room.texts
    return match.group(1)


async def statuses(bot: MirrorBot, job_id: str) -> list[ItemStatus]:
    job = await bot.service.store.get_job(job_id)
    assert job is not None
    return [item.status for item in job.items]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRROR_BOT, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


# -- in chat -----------------------------------------------------------------------------------


async def test_a_held_request_asks_the_admins_and_goes_on_when_one_approves(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    async with fault_proxy(lab.source) as proxy:
        settings = settings_for(
            tmp_path, lab, mirror_insecure_registries=(proxy.address, lab.target)
        )
        chats = Chats()
        async with running(settings, chats) as bot:
            stored_when_told: list[list[ItemStatus]] = []
            room = chats.room("room1")

            async def look(view: MessageView) -> None:
                text = to_plain_text(view)
                if text.startswith("Job ") and not stored_when_told:
                    stored_when_told.append(await statuses(bot, text.split()[1].rstrip(":")))

            original_post = room.post

            async def post(view: MessageView) -> Message:
                await look(view)
                return await original_post(view)

            room.post = post  # type: ignore[method-assign]
            await say(bot, "alice", room, f"/mirror {proxy.address}/library/hello:1.0")
            job_id = job_of(room)
            # Stored as held before the requester was told; told that it waits.
            assert stored_when_told == [[ItemStatus.AWAITING_APPROVAL]]
            assert "awaiting approval" in room.texts[0]
            assert "An admin must approve this source first" in room.texts[0]
            # The admin was asked privately: who, what, from which chat, with three buttons.
            asked = chats.private[ADMIN].messages
            assert len(asked) == 1
            question = asked[0].views[0]
            assert question.title == f"Approval needed: job {job_id}"
            assert f"Alice ({PLATFORM}:alice) asks in {PLATFORM}:room1" in question.lines[0]
            assert [a.label for a in question.actions] == [
                "Approve",
                "Approve this repository always",
                "Deny",
            ]
            assert proxy.seen == []  # nothing reached the source, not even for its size

            # A stranger's press does nothing, and only the stranger is told.
            dm = chats.private[ADMIN]
            told = await press(bot, "mallory", dm, question.actions[0].id)
            assert told == ["Only an admin may press this button; nothing was done."]
            assert await statuses(bot, job_id) == [ItemStatus.AWAITING_APPROVAL]
            typed = chats.room("elsewhere")
            await say(bot, "mallory", typed, f"/approve {job_id}")
            assert typed.texts == ["Only an admin may use `/approve`."]

            # The admin presses Approve in their private chat: the copy goes on.
            assert await press(bot, ADMIN, dm, question.actions[0].id) == []
            assert dm.texts[-1] == f"Approved 1 image of job {job_id}."
            await until(lambda: "done" in room.texts[-1])
            assert (
                f"Job {job_id}: an admin ({PLATFORM}:{ADMIN}) approved `{proxy.address}/library/"
                "hello:1.0`; copying now."
            ) in room.texts
            assert f"Job {job_id} done: 1 image ready" in room.texts[-1]
            assert proxy.requests("GET", "/manifests/")
            job = await bot.service.store.get_job(job_id)
            assert job is not None and job.items[0].approved_by == f"{PLATFORM}:{ADMIN}"
            # Pressed once, it acts once.
            told = await press(bot, ADMIN, dm, question.actions[0].id)
            assert told == ["This button was already pressed; nothing more to do."]


async def test_an_internal_source_nobody_named_is_never_approvable(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        room = await say(bot, "alice", chats.room("room1"), "/mirror 10.1.2.3:5000/team/app:1")
        assert room.texts == [
            "`10.1.2.3:5000` is an internal address the operator did not name, so nobody can "
            "approve it."
        ]
        assert ADMIN not in chats.private  # nobody was asked
        # The refusal was stored before it was said: the audit has it.
        jobs = await bot.service.store.jobs_since(0)
        assert [(j.requester, [i.status for i in j.items]) for j in jobs] == [
            (f"{PLATFORM}:alice", [ItemStatus.REFUSED])
        ]
        refused = jobs[0]
        answer = await say(bot, ADMIN, chats.room("admins"), f"/approve {refused.id} always")
        assert answer.texts == [f"Nothing in job {refused.id} waits for approval."]
        # Nor through "always" from the command line.
        env = clean_env(Path(settings.mirror_db), MIRROR_TARGET=f"{lab.target}/app")
        done = cli(env, "sources", "add", "10.1.2.3:5000/team/app")
        assert done.returncode == 2, done
        assert "internal address the operator did not name" in done.stderr
        assert await bot.service.store.approved_sources() == []


async def test_approve_always_adds_the_repository_and_later_requests_pass(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        room = await say(
            bot, "alice", chats.room("room1"), f"/mirror {lab.source}/library/hello:1.0"
        )
        job_id = job_of(room)
        admins = await say(bot, ADMIN, chats.room("admins"), f"/approve {job_id} always")
        assert admins.texts[0].startswith(f"Approved 1 image of job {job_id}.")
        assert f"Approved for good (see /sources): `{lab.source}/library/hello`." in admins.texts[0]
        await until(lambda: "done" in room.texts[-1])

        listed = await say(bot, "alice", chats.room("room2"), "/sources")
        assert f"{lab.source}/library/hello" in listed.texts[0]
        assert f"approved by {PLATFORM}:{ADMIN}" in listed.texts[0]

        # The same repository (another tag) now passes without asking anyone.
        later = await say(
            bot, "bob", chats.room("room3"), f"/mirror {lab.source}/library/hello:1.0$again:1"
        )
        await until(lambda: "done" in later.texts[-1])
        assert len(chats.private[ADMIN].messages) == 1  # asked about the first request only
        # Another repository of the same registry still asks.
        other = await say(
            bot, "bob", chats.room("room4"), f"/mirror {lab.source}/library/multi:1.0"
        )
        assert "awaiting approval" in other.texts[0]
        assert len(chats.private[ADMIN].messages) == 2

        # The command line lists, adds and removes the same stored list.
        env = clean_env(Path(settings.mirror_db))
        listed_cli = cli(env, "sources", "list")
        assert listed_cli.returncode == 0, listed_cli
        assert f"{lab.source}/library/hello\tapproved by {PLATFORM}:{ADMIN}" in listed_cli.stdout
        assert cli(env, "sources", "remove", f"{lab.source}/library/hello").returncode == 0
        assert await bot.service.store.approved_sources() == []
        assert cli(env, "sources", "remove", f"{lab.source}/library/hello").returncode == 1


async def test_a_list_is_asked_once_and_answered_per_image_or_whole(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        images = " ".join(f"{lab.source}/library/{name}:1.0" for name in ("hello", "multi"))
        room = await say(bot, "alice", chats.room("room1"), f"/mirror {images}")
        job_id = job_of(room)
        question = chats.private[ADMIN].messages
        assert len(question) == 1  # one question for the list
        assert [r.label for r in question[0].views[0].rows] == [
            f"1. {lab.source}/library/hello:1.0",
            f"2. {lab.source}/library/multi:1.0",
        ]
        admins = chats.room("admins")
        await say(bot, ADMIN, admins, f"/approve {job_id} 2")
        assert admins.texts[-1] == f"Approved 1 image of job {job_id}."
        stored = await statuses(bot, job_id)
        assert stored[0] is ItemStatus.AWAITING_APPROVAL and stored[1] is not stored[0]

        await say(bot, ADMIN, admins, f"/deny {job_id} not this one")
        assert admins.texts[-1] == f"Denied 1 image of job {job_id}."
        await until(lambda: "1 of 2 images ready" in room.texts[-1])
        assert await statuses(bot, job_id) == [ItemStatus.DENIED, ItemStatus.SUCCEEDED]
        assert f"Denied by an admin ({PLATFORM}:{ADMIN}): not this one" in room.texts[-1]
        assert len(chats.private[ADMIN].messages) == 1  # nobody was asked twice


async def test_identical_held_requests_share_one_approval(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab, mirror_admin_chat=f"{PLATFORM}:admins")
    chats = Chats()
    async with running(settings, chats) as bot:
        image = f"/mirror {lab.source}/library/hello:1.0"
        first = await say(bot, "alice", chats.room("room1"), image)
        second = await say(bot, "bob", chats.room("room2"), image)
        # Asked once, in MIRROR_ADMIN_CHAT rather than privately.
        assert [m.views[0].title for m in chats.rooms["admins"].messages] == [
            f"Approval needed: job {job_of(first)}"
        ]
        assert chats.private == {}
        admins = await say(bot, ADMIN, chats.room("admins"), f"/approve {job_of(first)}")
        assert admins.texts == [
            f"Approved 1 image of job {job_of(first)}.\n"
            "The same answer went to 1 identical request."
        ]
        await until(lambda: "done" in first.texts[-1] and "done" in second.texts[-1])


async def test_a_request_nobody_answers_expires_after_seven_days(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        room = await say(
            bot, "alice", chats.room("room1"), f"/mirror {lab.source}/library/hello:1.0"
        )
        job_id = job_of(room)
        bot.approvals.clock = lambda: time.time() + HELD_FOR - 60
        await bot.approvals.apply()
        assert await statuses(bot, job_id) == [ItemStatus.AWAITING_APPROVAL]
        bot.approvals.clock = lambda: time.time() + HELD_FOR + 1
        await bot.approvals.apply()
        assert await statuses(bot, job_id) == [ItemStatus.CANCELLED]
        await until(lambda: "nothing was mirrored" in room.texts[-1])
        assert "No admin answered within 7 days" in room.texts[-1]


async def test_a_watch_of_an_unapproved_source_is_approved_once_at_watch(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab, mirror_watch_interval=3600.0)
    chats = Chats()
    async with running(settings, chats) as bot:
        from mirror.watches import RegistryUpstream

        bot.start_watching({PLATFORM: chats}, RegistryUpstream(bot.service.engines))
        room = await say(
            bot, "alice", chats.room("room1"), f"/watch {lab.source}/library/hello:1.0"
        )
        assert "nothing is checked until then" in room.texts[0]
        (watch,) = await bot.service.store.watches()
        assert watch.held
        question = chats.private[ADMIN].messages[0].views[0]
        assert question.title == f"Approval needed: watch {watch.id}"
        await say(bot, ADMIN, chats.room("admins"), f"/approve {watch.id}")
        await until(lambda: any("done" in t for t in room.texts))
        assert f"Watch {watch.id}: an admin ({PLATFORM}:{ADMIN}) approved it" in room.texts[1]
        (approved,) = await bot.service.store.watches()
        assert not approved.held and approved.approved_by == f"{PLATFORM}:{ADMIN}"
        jobs = await bot.service.store.jobs_since(0)
        assert [i.approved_by for j in jobs for i in j.items] == [f"{PLATFORM}:{ADMIN}"]


# -- restarts and the command line --------------------------------------------------------------


async def test_an_answer_taken_while_the_bot_was_down_applies_at_its_start(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        room = await say(
            bot, "alice", chats.room("room1"), f"/mirror {lab.source}/library/hello:1.0"
        )
        job_id = job_of(room)
    env = clean_env(Path(settings.mirror_db))
    done = cli(env, "approve", job_id)
    assert done.returncode == 0, done
    assert f"job {job_id}: approved" in done.stdout
    async with running(settings, chats) as bot:  # the same chats: the thread is reopened
        await until(lambda: "done" in room.texts[-1])
        job = await bot.service.store.get_job(job_id)
        assert job is not None and job.items[0].approved_by.startswith("cli:")  # type: ignore[union-attr]
    assert cli(env, "approve", job_id).returncode == 1  # answered already


async def test_the_command_line_wakes_the_running_bot_sqlite(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab)
    chats = Chats()
    async with running(settings, chats) as bot:
        room = await say(
            bot, "alice", chats.room("room1"), f"/mirror {lab.source}/library/hello:1.0"
        )
        denied = await say(
            bot, "bob", chats.room("room2"), f"/mirror {lab.source}/library/multi:1.0"
        )
        env = clean_env(Path(settings.mirror_db))
        assert (await asyncio.to_thread(cli, env, "approve", job_of(room))).returncode == 0
        reason = ("--reason", "use the base image")
        assert (await asyncio.to_thread(cli, env, "deny", job_of(denied), *reason)).returncode == 0
        await until(lambda: "done" in room.texts[-1] and "denied" in denied.texts[-1])
        assert "Denied by an admin (cli:" in denied.texts[-1]
        assert "use the base image" in denied.texts[-1]


async def test_the_command_line_wakes_the_running_bot_postgres_and_workers(
    lab: lab_module.Lab, tmp_path: Path, pg_dsn: str, workers: Any
) -> None:
    workers()
    settings = settings_for(tmp_path, lab, db=pg_dsn)
    chats = Chats()
    async with running(settings, chats, role=Role.FRONT) as bot:
        room = await say(
            bot, "alice", chats.room("room1"), f"/mirror {lab.source}/library/hello:1.0"
        )
        job_id = job_of(room)
        env = clean_env(Path("unused.db"), MIRROR_DB=pg_dsn)
        import psycopg

        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute("LISTEN mirror_decisions")  # what the running bot hears
            assert (await asyncio.to_thread(cli, env, "approve", job_id)).returncode == 0
            heard = [n.payload async for n in conn.notifies(timeout=30, stop_after=1)]
        assert heard == [job_id]
        await until(lambda: "done" in room.texts[-1], timeout=90)
        job = await bot.service.store.get_job(job_id)
        assert job is not None and job.items[0].status.ok


# -- the audit ----------------------------------------------------------------------------------


async def test_the_audit_has_a_row_per_image_request_in_every_format(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab, mirror_allowed_sources=("docker.io", lab.source))
    chats = Chats()
    async with running(settings, chats) as bot:
        ok = await say(bot, "alice", chats.room("r1"), f"/mirror {lab.source}/library/hello:1.0")
        await until(lambda: "done" in ok.texts[-1])
        missing = await say(bot, "alice", chats.room("r2"), f"/mirror {lab.source}/library/nope:1")
        await until(lambda: "nothing was mirrored" in missing.texts[-1])
        await say(bot, "bob", chats.room("r3"), "/mirror 10.9.9.9/x:1")
        held = await say(bot, "bob", chats.room("r4"), f"/mirror {lab.target}/app/hello:1.0")
        asked = await say(bot, "dave", chats.room("r5"), f"/mirror {lab.target}/app/other:1")
        await say(bot, ADMIN, chats.room("admins"), f"/deny {job_of(asked)}")
        await until(lambda: "denied" in asked.texts[-1])
    env = clean_env(Path(settings.mirror_db))
    as_json = cli(env, "audit", "--format", "json")
    assert as_json.returncode == 0, as_json
    rows = json.loads(as_json.stdout)
    assert list(rows[0]) == [
        "time",
        "job",
        "requester",
        "chat",
        "source",
        "source_digest",
        "target",
        "target_digest",
        "bytes",
        "status",
        "approved_by",
        "engine",
    ]
    by_job = {row["job"]: row for row in rows}
    assert [row["status"] for row in rows] == [
        "succeeded",
        "failed",
        "refused",
        "awaiting_approval",
        "denied",
    ]
    done = by_job[job_of(ok)]
    assert done["requester"] == f"{PLATFORM}:alice" and done["chat"] == f"{PLATFORM}:r1"
    assert done["source"] == f"{lab.source}/library/hello:1.0"
    expected = f"{settings.mirror_target}/{lab.source.replace(':', '-')}.library.hello:1.0"
    assert done["target"] == expected
    assert done["source_digest"] == done["target_digest"] and done["bytes"] > 0
    assert done["engine"] == "registry" and done["approved_by"] is None
    assert done["time"].endswith("Z")
    assert by_job[job_of(asked)]["approved_by"] == f"{PLATFORM}:{ADMIN}"
    assert by_job[job_of(held)]["approved_by"] is None

    as_csv = cli(env, "audit", "--format", "csv", "--since", "1h")
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["status"] for row in parsed] == [row["status"] for row in rows]
    assert parsed[2]["approved_by"] == ""
    table = cli(env, "audit")
    header, *lines = table.stdout.splitlines()
    assert header.split() == list(rows[0])
    assert len(lines) == len(rows) and "refused" in lines[2]


# -- settings and the chat port ---------------------------------------------------------------


def test_approval_needs_an_admin_and_an_admin_chat_on_a_configured_platform(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "bot.db", MIRROR_APPROVAL="all")
    done = cli(env, "check")
    assert done.returncode == 2
    assert "MIRROR_APPROVAL is all but MIRROR_ADMINS names nobody to approve" in done.stdout
    env.update(MIRROR_ADMINS="console:alice", MIRROR_ADMIN_CHAT="slack:C123")
    checked = cli(env, "check")
    assert checked.returncode == 2
    assert "configuration: FAILED: MIRROR_ADMIN_CHAT: `slack` is not a configured" in checked.stdout
    run = subprocess.run(
        [MIRROR_BOT, "run"], env=env, input="", capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run
    assert run.stderr.strip().splitlines()[-1] == (
        "MIRROR_ADMIN_CHAT: `slack` is not a configured chat platform here (configured: "
        "console); name a chat of one of them."
    )
    settings = Settings(_env_file=None, mirror_admin_chat="test:room9")  # type: ignore[call-arg]
    check_admin_chat(settings, {PLATFORM: Chats()})  # Addressable: fine
    with pytest.raises(ConfigurationError, match="cannot post where nobody asked"):
        check_admin_chat(settings, {PLATFORM: _NotAddressable()})


class _NotAddressable:
    name = PLATFORM

    async def serve(self, handler: Any) -> None: ...

    async def reopen(self, ref: str) -> None:
        return None


async def test_telegram_writes_first_only_to_someone_who_started_the_bot() -> None:
    from adapters.telegram import TelegramAdapter
    from bot.chat import Undeliverable
    from tests.support.fake_telegram import Chat, FakeTelegram

    fake = await FakeTelegram("42:secret").start()
    adapter = TelegramAdapter("42:secret", api_url=fake.url)
    heard: list[Incoming] = []

    async def handler(incoming: Incoming, conversation: Any) -> None:
        heard.append(incoming)

    assert isinstance(adapter, Addressable)
    serving = asyncio.create_task(adapter.serve(handler))
    try:
        await fake.wait_for(lambda: fake.ok("getUpdates") or None)
        with pytest.raises(Undeliverable):
            await adapter.open_private("77")
        fake.send(Chat(77), 77, "/help")  # now they started it
        await fake.wait_for(lambda: heard or None)
        dm = await adapter.open_private("77")
        await dm.post(MessageView("Approval needed: job abc123"))
        group = await adapter.open_chat("-1001")
        await group.post(MessageView("Approval needed: job def456"))
        sent = fake.ok("sendMessage")
        assert [(c.chat_id, c.reply_to) for c in sent] == [(77, None), (-1001, None)]
        assert "Approval needed: job abc123" in sent[0].text
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await fake.close()


def test_slack_opens_a_direct_message_or_posts_in_a_channel() -> None:
    from adapters.slack import SlackAdapter
    from tests.support.fake_slack import FakeSlack

    slack = FakeSlack("xoxb-token").start()
    try:
        adapter = SlackAdapter(bot_token="xoxb-token", signing_secret="s", api_url=slack.api_url)
        assert isinstance(adapter, Addressable)

        async def post() -> None:
            dm = await adapter.open_private("U0CAROL")
            await dm.post(MessageView("Approval needed: job abc123"))
            channel = await adapter.open_chat("C0ADMINS")
            await channel.post(MessageView("Approval needed: job def456"))

        asyncio.run(post())
        [dm] = slack.posts("D0CAROL")
        assert "Approval needed: job abc123" in dm.params["text"]
        [in_channel] = slack.posts("C0ADMINS")
        assert "thread_ts" not in in_channel.params
    finally:
        slack.stop()


async def test_the_console_prints_what_is_posted_to_an_admin(tmp_path: Path) -> None:
    from adapters.console import ConsoleAdapter

    out = io.StringIO()
    with (tmp_path / "in").open("w+") as stdin:
        adapter = ConsoleAdapter(stdin, out)
        assert isinstance(adapter, Addressable)
        await (await adapter.open_private("alice")).post(MessageView("Approval needed: job x"))
        await (await adapter.open_chat("local")).post(MessageView("Approval needed: job y"))
    assert out.getvalue().splitlines() == ["Approval needed: job x", "Approval needed: job y"]
