"""Following a job: store it, tell the chat, remember where, start it, and answer at the end.

A job is stored before anyone is told it exists, in this order: store the job, post the
acknowledgement, store where it was posted (``reply_ref``), start it. A store that fails gets
one sentence and no acknowledgement. A job left without a ``reply_ref`` (the bot stopped, or the
store or chat failed, between the first and third step) was never started, so nothing was
copied: it is failed with :data:`NOT_ACKNOWLEDGED` at once, or on the next start by
:func:`bot.recovery.recover`, and ``/status JOB`` says so.

While it runs, the job's progress edits one live message under the chat's flood limit
(:mod:`bot.live`); its final answer is a new message in the thread, in the requester's
language, with the buttons stored before they are shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from functools import partial

from bot import actions, render
from bot.chat import ChatError, Conversation, Reply
from bot.i18n import current, readers, speaking
from bot.live import LiveMessage
from bot.pacing import Pacer, Priority
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
        self._followers = TaskSet("bot")

    async def start(
        self,
        adapter: str,
        conversation: Conversation,
        job: Job,
        pasted: PastedFiles | None = None,
    ) -> None:
        """Store, acknowledge, store where, start and follow: the one way a job begins."""
        store = self._service.store
        ack = translated(partial(render.acknowledgement, job))
        asks = self._settings.mirror_confirm_bytes and not job.confirmed
        ahead = actions.confirmations(job) if asks else ()
        await store.add_actions(actions.stored(job, (*ack.actions, *ahead)))  # before shown
        await store.add_job(job)  # failing here, nobody was told and nothing runs
        with job_context(job.id):  # the live message and the follower log with the job's id
            try:
                reply = await self._pacer.send(
                    conversation,
                    Priority.ACK,
                    partial(conversation.post, ack),
                    what="acknowledgement",
                    adapter=adapter,
                )
            except (TimeoutError, ChatError):
                await self._never_started(job)
                raise
            job.reply_ref = f"{adapter}:{reply.ref}"
            if not await self._where_stored(adapter, conversation, job, reply):
                return
            live = LiveMessage(self._pacer, conversation, reply, initial=ack, adapter=adapter)
            task = self._service.start(job, progress_to(live, current(), readers()))
            self._follow(job, task, conversation, live, pasted)

    async def _where_stored(
        self, adapter: str, conversation: Conversation, job: Job, reply: Reply
    ) -> bool:
        """Store the acknowledgement's handle; without it a restart could not find the thread
        again, so the job does not start and the acknowledgement says why."""
        try:
            await self._service.store.set_reply_ref(job)
        except StoreError as exc:
            log.error("job %s: the store failed: %s", job.id, exc.__cause__ or exc)
            await self._never_started(job)
            await self._pacer.send(
                conversation,
                Priority.ANSWER,
                partial(reply.edit, render.error(text_of(exc))),
                what="error",
                adapter=adapter,
            )
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
            live = LiveMessage(self._pacer, conversation, reply, adapter=platform)
            live.update(translated(partial(render.progress, job)))
            task = self._service.start(job, progress_to(live, language, languages))
            self._follow(job, task, conversation, live)

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
        live: LiveMessage,
        pasted: PastedFiles | None = None,
    ) -> None:
        self._followers.spawn(
            self._finish(job, task, conversation, live, pasted), name=f"follow-{job.id}"
        )

    async def _finish(
        self,
        job: Job,
        task: asyncio.Task[Job],
        conversation: Conversation,
        live: LiveMessage,
        pasted: PastedFiles | None,
    ) -> None:
        started = time.monotonic()
        try:
            await task
        except asyncio.CancelledError:
            if not job.finished:  # the bot is shutting down: the job resumes after a restart
                await live.close()
                raise
        except Exception as exc:  # e.g. the store failed: still tell the thread what happened
            log.error("job %s could not record its result: %s", job.id, exc)
        long_job = time.monotonic() - started >= self._settings.mirror_long_job_seconds
        extra = rewrite(job.items, pasted, self._render_options) if pasted is not None else ()
        answer = partial(render.answer, job, self._render_options, notify=long_job, rewrite=extra)
        final = translated(answer)
        try:
            await self._service.store.add_actions(actions.stored(job, final.actions))
        except StoreError as exc:  # the answer still goes out, without buttons nobody could use
            log.error("job %s: its buttons were not stored: %s", job.id, exc)
            final = translated(lambda: replace(answer(), actions=()))
        await live.finish(translated(partial(render.progress, job)), final)

    async def drain(self, stop: asyncio.Event) -> None:
        """Wait for running jobs to deliver their answers, unless asked to stop first."""
        await self._followers.wait(stop)

    async def aclose(self) -> None:
        await self._followers.aclose()


def progress_to(live: LiveMessage, language: str, languages: tuple[str, ...] = ()) -> JobListener:
    """Render every change in the requester's language (in each of ``languages`` where the
    chat shows several), whichever task reports it."""

    def listener(job: Job) -> None:
        with speaking(language, readers=languages):
            live.update(translated(partial(render.progress, job)))

    return listener
