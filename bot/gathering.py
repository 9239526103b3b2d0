"""Busy chats settle: jobs asked together in one chat share one live message.

Telegram lets a group have 20 messages a minute. A job costs an acknowledgement, a last view
of its live message and an answer; ten jobs asked at once in one group are thirty calls, so
the last views waited for the next minute and the group kept saying "mirroring" long after
every answer was there. In a busy chat the bot spends fewer messages instead of more time:

- **Gathered acknowledgements.** A job's acknowledgement waits in its chat's queue
  (:mod:`bot.pacing`) for its turn; every job asked in the same room (:class:`bot.chat.
  Gathering`) while it waits joins it, and it goes as one message naming each
  (``3 jobs: mirroring 3 images``, a row per job with its id, images and state), which is
  their live message. In a quiet chat the acknowledgement goes at once, alone; a shared
  message holds at most :data:`MOST_SHARED` jobs.
- **One answer each.** Every job still gets its answer as a reply to its own request, with
  its pull commands; a shared message ends with its last view once its jobs are over.
- **The answer replaces a quick job's acknowledgement.** A job alone in the acknowledgement
  of its own request gets its answer as that message's last edit, when an edit carries it
  as well as a new message would (it fits, and needs no notification, which only a long job
  asks for): one call instead of two (:meth:`bot.live.LiveMessage.become`).

So ten jobs in a group cost about twelve calls, not thirty, and all of them fit in the
group's first minute. Recovery's order is unchanged: a job is stored before its
acknowledgement is queued, and its reply handle — the (shared) message as seen from its own
request (:meth:`bot.chat.Gathering.share`), so that after a restart its answer still replies
to its request — is stored before it starts; after a restart the jobs of one shared message
share it again (:meth:`Gatherer.resume`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial

from bot import render
from bot.chat import Conversation, Gathering, Reply
from bot.i18n import speaking
from bot.live import LiveMessage, post_answer
from bot.pacing import Pacer, Priority, Ticket, pace_of
from bot.view import MessageView, translated
from mirror.jobs import JobListener
from mirror.models import Job

MOST_SHARED = 10
"""Jobs one shared live message shows: ten rows fit one Telegram message with room to spare."""
GATHER = 0.3
"""Seconds a new acknowledgement waits for others to join it, in a busy chat whose budget is
counted over a long window (a group's minute); within the second an acknowledgement is due."""


class Board:
    """One live message and the jobs it shows: their view together, its end with the last."""

    def __init__(
        self,
        pacer: Pacer,
        adapter: str,
        conversation: Conversation,
        reply: Reply,
        language: str,
        languages: tuple[str, ...],
        jobs: list[Job],
        *,
        initial: MessageView | None,
        in_place: bool,
    ) -> None:
        self._pacer = pacer
        self._adapter = adapter
        self._language = language
        self._languages = languages
        self._jobs = {job.id: job for job in jobs}
        self._open = set(self._jobs)
        self._shared = len(jobs) > 1
        self._in_place = in_place and not self._shared
        """The message is the acknowledgement of its one job's own request: it may become
        that job's answer."""
        owed = len(jobs) + (1 if self._shared else 0)  # the answers, and a shared last view
        self._live = LiveMessage(pacer, conversation, reply, initial, adapter=adapter, owed=owed)

    @property
    def over(self) -> bool:
        return not self._open

    def view(self) -> MessageView:
        """The jobs' state, in the language of the one who asked first (in each a chat shows
        at once: :func:`bot.view.translated`)."""
        jobs = list(self._jobs.values())
        build = (
            partial(render.together, jobs) if self._shared else partial(render.progress, jobs[0])
        )
        with speaking(self._language, readers=self._languages):
            return translated(build)

    def join(self, job: Job) -> None:
        """A job that shares this message joins it after a restart."""
        if job.id in self._jobs:
            return
        self._jobs[job.id] = job
        self._open.add(job.id)
        self._live.owe(1 if self._shared else 2)  # its answer (and now a shared last view)
        self._shared, self._in_place = True, False

    def listener(self) -> JobListener:
        """What a job's progress calls: the message shows everyone's newest state."""

        def changed(_job: Job) -> None:
            self._live.update(self.view())

        return changed

    async def end(self, job: Job, conversation: Conversation, answer: MessageView) -> None:
        """``job`` is over: its answer in its own thread (the message itself, when it may
        become it); the message's last view once every job it shows is over."""
        self._open.discard(job.id)
        if not self._shared:
            if self._in_place and self._live.can_become(answer):
                await self._live.become(answer)
            else:
                await self._live.finish(self.view(), answer)
            return
        try:
            await post_answer(self._pacer, conversation, answer, self._adapter, job.id)
        finally:
            self._live.paid()
        if self._open:
            self._live.update(self.view())
        else:
            await self._live.finish(self.view())

    async def refuse(self, job: Job, conversation: Conversation, view: MessageView) -> None:
        """``job`` will not run: the acknowledgement says why instead (its own message
        becomes ``view``; in a shared one, a reply in its thread)."""
        if self._shared:
            await self.end(job, conversation, view)
            return
        self._open.discard(job.id)
        await self._live.become(view)

    async def close(self) -> None:
        """Stop without a last word (the bot is shutting down; the jobs resume later)."""
        await self._live.close()


@dataclass(frozen=True)
class Seat:
    """A job's place in a live message: its own handle of the message, and the board."""

    reply: Reply
    board: Board


@dataclass
class _Batch:
    """An acknowledgement waiting for its turn, and the jobs gathered into it."""

    adapter: str
    conversation: Conversation
    language: str
    languages: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)
    ticket: Ticket | None = None
    board: Board | None = None
    sealed: bool = False

    def view(self) -> MessageView:
        jobs = list(self.jobs)
        one = len(jobs) == 1
        build = partial(render.acknowledgement, jobs[0]) if one else partial(render.together, jobs)
        with speaking(self.language, readers=self.languages):
            return translated(build)


class Gatherer:
    """Every job's acknowledgement, gathered per room while it waits for its turn."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self._waiting: dict[tuple[str, str], _Batch] = {}
        self._resumed: dict[tuple[str, ...], Board] = {}

    async def acknowledge(
        self,
        adapter: str,
        conversation: Conversation,
        job: Job,
        language: str,
        languages: tuple[str, ...] = (),
    ) -> Seat:
        """Tell the chat about ``job``: in an acknowledgement waiting in its room, else in a
        new one. Returns once it was posted; raises what the chat raised (for every job in
        it), so that nothing runs that nobody was told of."""
        key = (adapter, conversation.room) if isinstance(conversation, Gathering) else None
        batch = self._waiting.get(key) if key is not None else None
        if batch is None or batch.sealed or len(batch.jobs) >= MOST_SHARED:
            batch = _Batch(adapter, conversation, language, languages)
            batch.ticket = self._pacer.submit(
                conversation,
                Priority.ACK,
                partial(self._post, key, batch),
                what="acknowledgement",
                adapter=adapter,
                not_before=time.monotonic() + self._gather_for(key, conversation, adapter),
            )
            if key is not None:
                self._waiting[key] = batch
        batch.jobs.append(job)
        assert batch.ticket is not None
        reply = await asyncio.shield(batch.ticket.future)  # one asker's cancel is not all's
        assert batch.board is not None
        if job is not batch.jobs[0] and isinstance(conversation, Gathering):
            reply = conversation.share(reply)
        return Seat(reply, batch.board)

    def _gather_for(
        self, key: tuple[str, str] | None, conversation: Conversation, adapter: str
    ) -> float:
        """:data:`GATHER` where others asked in the room are still owed their answers and its
        budget is counted over a long window; else nothing: a quiet chat's first request is
        acknowledged at once, and a short window's queue gathers by itself."""
        if key is None or not self._pacer.owed(conversation, adapter):
            return 0.0
        return GATHER if pace_of(conversation).budget.seconds > self._pacer.patience else 0.0

    async def _post(self, key: tuple[str, str] | None, batch: _Batch) -> Reply:
        """One try of the acknowledgement: whoever joined by now is in it, later jobs start
        another (a retry after a 429 posts the same jobs)."""
        batch.sealed = True
        if key is not None and self._waiting.get(key) is batch:
            del self._waiting[key]
        view = batch.view()
        reply = await batch.conversation.post(view)
        batch.board = Board(
            self._pacer,
            batch.adapter,
            batch.conversation,
            reply,
            batch.language,
            batch.languages,
            batch.jobs,
            initial=view,
            in_place=True,
        )
        return reply

    def resume(
        self,
        adapter: str,
        conversation: Conversation,
        reply: Reply,
        job: Job,
        language: str,
        languages: tuple[str, ...] = (),
    ) -> Seat:
        """After a restart: ``job``'s seat in its old live message, shared again with the
        other unfinished jobs of that message. Its answer is a new message in its own
        thread: whether the message was its own acknowledgement is not known any more."""
        self._resumed = {k: b for k, b in self._resumed.items() if not b.over}
        if isinstance(conversation, Gathering):
            key: tuple[str, ...] = (adapter, conversation.room, conversation.message_of(reply))
        else:
            key = (adapter, reply.ref)
        board = self._resumed.get(key)
        if board is None:
            board = Board(
                self._pacer,
                adapter,
                conversation,
                reply,
                language,
                languages,
                [job],
                initial=None,
                in_place=False,
            )
            self._resumed[key] = board
        else:
            board.join(job)
        board.listener()(job)  # show the state it resumes from
        return Seat(reply, board)
