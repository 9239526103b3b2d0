"""Following a job: store it, tell the chat, remember where, start it, and answer at the end.

A job is stored before anyone is told it exists, in this order: store the job, post the
acknowledgement (alone, or in a message it shares with the jobs asked in its chat at the same
time: :mod:`bot.gathering`), store where it was posted (``reply_ref``), start it. A store that
fails gets
one sentence and no acknowledgement. A job left without a ``reply_ref`` (the bot stopped, or the
store or chat failed, between the first and third step) was never started, so nothing was
copied: it is failed with :data:`NOT_ACKNOWLEDGED` at once, or on the next start by
:func:`bot.recovery.recover`, and ``/status JOB`` says so.

While it runs, the job's progress edits its live message under the chat's flood limit
(:mod:`bot.live`); its final answer, in the requester's language with the buttons stored
before they are shown, replies to its request: the live message itself becomes it when the
job was quick and alone in it, else it is a new message in the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from functools import partial
from typing import Protocol

from bot import actions, render
from bot.chat import ChatError, Conversation, Reply
from bot.gathering import Board, Gatherer, Seat
from bot.i18n import current, readers, speaking
from bot.pacing import Pacer
from bot.paste import PastedFiles
from bot.rewrite import rewrite
from bot.settings import Settings
from bot.view import translated
from mirror.jobs import JobListener, JobService
from mirror.logcontext import job_context
from mirror.models import Job
from mirror.store import StoreError
from mirror.tasks import TaskSet
from mirror.text import Text, text_of

log = logging.getLogger(__name__)

NOT_ACKNOWLEDGED = Text(
    "The bot could not tell the chat about this job, so it never started; ask again."
)


class JobObserver(Protocol):
    """Someone besides the chat who follows every job (the job pages, :mod:`bot.web`): told
    of each change the live message is told of, on the event loop, and once more when the
    job's answer is ready (its rewrite stored). Must not block."""

    def changed(self, job: Job) -> None: ...

    def ended(self, job: Job) -> None: ...


class JobFollower:
    """Every job the bot started or resumed, from its acknowledgement to its final answer."""

    def __init__(
        self,
        settings: Settings,
        service: JobService,
        pacer: Pacer,
        render_options: render.RenderOptions,
    ) -> None:
        self._settings = settings
        self._service = service
        self._pacer = pacer
        self._render_options = render_options
        self._gatherer = Gatherer(pacer, render_options)
        self._followers = TaskSet("bot")
        self._observers: list[JobObserver] = []

    def observe(self, observer: JobObserver) -> None:
        """Tell ``observer`` of every job's changes from now on."""
        self._observers.append(observer)

    def _listener(self, board: Board) -> JobListener:
        """What a job's progress calls: its live message, and every observer."""
        to_chat = board.listener()
        observers = self._observers

        def listener(job: Job) -> None:
            to_chat(job)
            for observer in observers:
                observer.changed(job)

        return listener

    async def start(
        self,
        adapter: str,
        conversation: Conversation,
        job: Job,
        pasted: PastedFiles | None = None,
    ) -> None:
        """Store, acknowledge, store where, start and follow: the one way a job begins."""
        store = self._service.store
        asks = self._settings.mirror_confirm_bytes and not job.confirmed
        ahead = actions.confirmations(job) if asks else ()
        # The acknowledgement's buttons (alone or in a shared message: the same ids), stored
        # before it is shown.
        await store.add_actions(actions.stored(job, (*actions.while_running(job), *ahead)))
        await store.add_job(job)  # failing here, nobody was told and nothing runs
        with job_context(job.id):  # the live message and the follower log with the job's id
            try:
                seat = await self._gatherer.acknowledge(
                    adapter, conversation, job, current(), readers()
                )
            except (TimeoutError, ChatError):
                await self._never_started(job)
                raise
            job.reply_ref = f"{adapter}:{seat.reply.ref}"
            if not await self._where_stored(conversation, job, seat.board):
                return
            task = self._service.start(job, self._listener(seat.board))
            self._follow(job, task, conversation, seat.board, pasted)

    async def _where_stored(self, conversation: Conversation, job: Job, board: Board) -> bool:
        """Store the acknowledgement's handle; without it a restart could not find the thread
        again, so the job does not start and its answer says why."""
        try:
            await self._service.store.set_reply_ref(job)
        except StoreError as exc:
            log.error("job %s: the store failed: %s", job.id, exc.__cause__ or exc)
            await self._never_started(job)
            await board.refuse(job, conversation, render.error(text_of(exc)))
            return False
        return True

    def resume(
        self,
        platform: str,
        conversation: Conversation,
        reply: Reply,
        job: Job,
        language: str,
        languages: tuple[str, ...] = (),
    ) -> None:
        """Follow a job a restart interrupted, in its old live message, in ``language`` (in
        each of ``languages`` where the chat shows several: :func:`bot.i18n.speaking`)."""
        with job_context(job.id), speaking(language, readers=languages):
            seat: Seat = self._gatherer.resume(
                platform, conversation, reply, job, language, languages
            )
            task = self._service.start(job, self._listener(seat.board))
            self._follow(job, task, conversation, seat.board)

    async def fail_unacknowledged(self, job: Job) -> None:
        """A stored job nobody was told about: it never started, and never will."""
        await self._service.fail_interrupted(job, NOT_ACKNOWLEDGED)

    async def _never_started(self, job: Job) -> None:
        """Fail a stored job that will not run; if the store fails too, recovery does it."""
        try:
            await self.fail_unacknowledged(job)
        except StoreError as exc:
            log.error("job %s stays unfinished until the next start: %s", job.id, exc)

    def _follow(
        self,
        job: Job,
        task: asyncio.Task[Job],
        conversation: Conversation,
        board: Board,
        pasted: PastedFiles | None = None,
    ) -> None:
        self._followers.spawn(
            self._finish(job, task, conversation, board, pasted), name=f"follow-{job.id}"
        )

    async def _finish(
        self,
        job: Job,
        task: asyncio.Task[Job],
        conversation: Conversation,
        board: Board,
        pasted: PastedFiles | None,
    ) -> None:
        started = time.monotonic()
        try:
            await task
        except asyncio.CancelledError:
            if not job.finished:  # the bot is shutting down: the job resumes after a restart
                await board.close()
                raise
        except Exception as exc:  # e.g. the store failed: still tell the thread what happened
            log.error("job %s could not record its result: %s", job.id, exc)
        long_job = time.monotonic() - started >= self._settings.mirror_long_job_seconds
        extra = rewrite(job.items, pasted, self._render_options) if pasted is not None else ()
        if extra:
            job.rewrite = extra
            try:
                await self._service.store.set_rewrite(job)
            except StoreError as exc:  # the answer still carries it
                log.error("job %s: its rewrite was not stored: %s", job.id, exc)
        for observer in self._observers:
            observer.ended(job)
        answer = partial(
            render.answer,
            job,
            self._render_options,
            notify=long_job,
            rewrite=extra,
            digest_note=await self._first_digest_note(job),
        )
        final = translated(answer)
        try:
            await self._service.store.add_actions(actions.stored(job, final.actions))
        except StoreError as exc:  # the answer still goes out, without buttons nobody could use
            log.error("job %s: its buttons were not stored: %s", job.id, exc)
            final = translated(lambda: replace(answer(), actions=()))
        await board.end(job, conversation, final)

    async def _first_digest_note(self, job: Job) -> bool:
        """Whether this answer explains why a copy's digest differs: the first time in its
        chat (stored, so a restart does not say it again); when the store fails, say it."""
        if not render.needs_digest_note(job):
            return False
        try:
            return await self._service.store.first_notice(f"digest-note:{job.chat}")
        except StoreError as exc:
            log.warning("job %s: could not look up the digest note: %s", job.id, exc)
            return True

    async def drain(self, stop: asyncio.Event) -> None:
        """Wait for running jobs to deliver their answers, unless asked to stop first."""
        await self._followers.wait(stop)

    async def aclose(self) -> None:
        await self._followers.aclose()
