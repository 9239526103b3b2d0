"""Jobs asked together in a busy group share one live message, and still do after a restart.

In process through ``MirrorBot.handle``, as in test_app: the chat is our own in-memory
implementation of the chat port for a group everyone reads (a budget of 20 calls a minute and
the optional ``Gathering``), the store a real SQLite file, the copies real ones between the
lab's registries, slowed by a relay so that the bot can be restarted in the middle.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lab as lab_module
from bot.chat import Incoming, Reply
from bot.pacing import Budget, Pace
from bot.view import MessageView, to_plain_text
from tests.support.throttle import throttled
from tests.test_app import PLATFORM, finish, running_bot, settings_for

CHAT = "team"


@dataclass
class Posted:
    """A message of the bot's: the request it replies to, and every view it showed."""

    id: int
    request: str
    views: list[MessageView]

    @property
    def text(self) -> str:
        return to_plain_text(self.views[-1])


@dataclass
class Handle:
    group: Group
    message: int
    request: str

    @property
    def ref(self) -> str:
        return f"{self.message}:{self.request}"

    async def edit(self, view: MessageView) -> None:
        self.group.messages[self.message].views.append(view)


@dataclass
class Thread:
    """The answer to one request in the group: a reply to it."""

    group: Group
    request: str
    edit_interval: float = 0.0

    @property
    def pace(self) -> Pace:
        return Pace(CHAT, Budget(20, 60.0))

    @property
    def room(self) -> str:
        return CHAT

    async def post(self, view: MessageView) -> Reply:
        posted = Posted(len(self.group.messages), self.request, [view])
        self.group.messages.append(posted)
        return Handle(self.group, posted.id, self.request)

    def share(self, reply: Reply) -> Reply:
        assert isinstance(reply, Handle)
        return Handle(self.group, reply.message, self.request)

    def message_of(self, reply: Reply) -> str:
        assert isinstance(reply, Handle)
        return str(reply.message)


@dataclass
class Group:
    """A group chat and the adapter that reaches it again after a restart."""

    name: str = PLATFORM
    messages: list[Posted] = field(default_factory=list)

    async def serve(self, handler: Any) -> None:
        await asyncio.Event().wait()

    async def reopen(self, ref: str) -> tuple[Thread, Handle] | None:
        message, _, request = ref.partition(":")
        return Thread(self, request), Handle(self, int(message), request)

    def replies(self, request: str) -> list[Posted]:
        return [m for m in self.messages if m.request == request]


def job_ids(group: Group) -> list[str]:
    return sorted({j for m in group.messages for j in re.findall(r"Job (\w{6})", m.text)})


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(120):
        while not condition():
            await asyncio.sleep(0.05)


async def test_jobs_asked_together_share_a_live_message_that_a_restart_edits_again(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    group = Group()
    people = ("ann", "ben", "cat")
    with throttled(lab.source, rate=1_000_000) as slow:  # a few seconds of copying
        settings = settings_for(tmp_path, lab.target, slow.address)
        image = f"/mirror {slow.address}/library/multi:1.0"
        async with running_bot(settings) as bot:
            await asyncio.gather(
                *(
                    bot.handle(Incoming(PLATFORM, who, who, CHAT, image, is_group=True), thread)
                    for who, thread in ((p, Thread(group, f"request-{p}")) for p in people)
                )
            )
            await until(lambda: any("copying" in m.text for m in group.messages))
        stopped = [len(m.views) for m in group.messages]
        async with running_bot(settings) as bot:
            assert await bot.recover({PLATFORM: group}) == len(people)
            await finish(bot)
            jobs = [await bot.service.store.get_job(job) for job in job_ids(group)]

    acknowledgements = [m for m in group.messages if m.id < len(stopped)]
    assert len(acknowledgements) < len(people)  # some were told in one message
    [together] = [m for m in acknowledgements if re.match(r"\d jobs", m.views[0].title)]
    named = re.findall(r"Job (\w{6})", to_plain_text(together.views[0]))
    assert len(named) >= 2
    # After the restart the shared message was edited again, to its end.
    assert len(together.views) > stopped[together.id]
    count = len(named)
    assert together.views[-1].title == f"{count} jobs finished: {count} of {count} images ready"
    # Each requester has an answer with the pull command, as a reply to their own request.
    for person in people:
        answers = [m for m in group.replies(f"request-{person}") if "docker pull" in m.text]
        assert len(answers) == 1, [m.text for m in group.messages]
    # Their stored handles: the shared message, each as seen from its own request.
    refs = [job.reply_ref for job in jobs if job is not None and job.id in named]
    assert {ref.split(":")[1] for ref in refs} == {str(together.id)}
    assert len({ref.split(":")[2] for ref in refs}) == len(named)
