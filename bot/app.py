"""The application: one handler for every adapter, from a command to the final answer.

Adapters call :meth:`MirrorBot.handle` with who/where/what and a conversation to answer in.
It answers at once (before any registry traffic), then follows the job in the background:
a live message edited under the adapter's flood limit, and a final answer in the thread.

A job is stored before anyone is told it exists, in this order: store the job, post the
acknowledgement, store where it was posted (``reply_ref``), start it. A store that fails gets
one sentence and no acknowledgement. A job left without a ``reply_ref`` (the bot stopped, or the
store or chat failed, between the first and third step) was never started, so nothing was
copied: it is failed with :data:`NOT_ACKNOWLEDGED` at once, or on the next start by
:meth:`MirrorBot.recover`, and ``/status JOB`` says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from types import TracebackType

from bot import actions, render
from bot.chat import ChatAdapter, Conversation, Incoming, Reply, Undeliverable
from bot.commands import (
    CancelCommand,
    ConfirmCommand,
    HelpCommand,
    HistoryCommand,
    InspectCommand,
    LanguageCommand,
    MirrorCommand,
    PlanCommand,
    StatusCommand,
    TagsCommand,
    UnwatchCommand,
    UsageError,
    WatchCommand,
    WatchesCommand,
    parse_command,
)
from bot.files import file_text
from bot.i18n import ENGLISH, N_, _, current, localize, readers, speaking
from bot.languages import Languages
from bot.live import LiveMessage
from bot.pacing import Pacer, Priority
from bot.paste import Ambiguous, PastedFiles
from bot.planner import Planner
from bot.policy import Denied, Policy
from bot.rewrite import rewrite
from bot.runtime import LazyLookups
from bot.settings import Settings
from bot.view import MessageView, human_bytes, translated
from mirror.errors import MirrorError
from mirror.jobs import JobListener, JobService
from mirror.logcontext import job_context
from mirror.models import ItemStatus, Job, Watch, is_tag_filter, new_job_id, platform_text
from mirror.naming import parse_image_spec
from mirror.store import StoreError
from mirror.tasks import TaskSet
from mirror.text import Text, text_of
from mirror.watches import Upstream, Watcher

log = logging.getLogger(__name__)

INTERRUPTED = Text("The bot restarted during this job and could not reach its chat to resume it.")
NOT_ACKNOWLEDGED = Text(
    "The bot could not tell the chat about this job, so it never started; ask again."
)
CHAT_GONE = Text("The bot could not reach the chat where this watch was made.")
HANT_FALLBACK = N_(
    "I do not speak Traditional Chinese yet, so I answer in English; "
    "send `/mirror lang zh` for Simplified Chinese."
)


class MirrorBot:
    def __init__(
        self,
        settings: Settings,
        service: JobService,
        policy: Policy,
        planner: Planner,
        render_options: render.RenderOptions,
        lookups: LazyLookups | None = None,
    ) -> None:
        self.settings = settings
        self.lookups = lookups or LazyLookups(settings, policy)
        """The bot's own registry reads, for ``/tags`` and ``/inspect``."""
        self.service = service
        self.policy = policy
        self.planner = planner
        self.render_options = render_options
        self._followers = TaskSet("bot")
        self.pacer = Pacer()
        """Every post and edit of every job, per chat, by priority (:mod:`bot.pacing`)."""
        self._adapters: Mapping[str, ChatAdapter] = {}
        self._watching = TaskSet("watches")
        self.watcher: Watcher | None = None
        self.languages = Languages(service.store, settings.mirror_language)

    # -- entry point --------------------------------------------------------------------------

    async def handle(self, incoming: Incoming, conversation: Conversation) -> None:
        """Answer one command. Returns once the job (if any) is acknowledged, not finished.

        Everything said to the sender, now and later in the thread (the job's live message and
        final answer are rendered in tasks started here), is in the sender's language."""
        choice = await self.languages.of(incoming)
        with speaking(choice.language, readers=choice.readers(conversation)):
            await self._handle(incoming, conversation)
        if choice.unsupported_chinese and incoming.press is None:
            await self._say_once(
                incoming, conversation, f"hant:{incoming.platform}:{incoming.user_id}"
            )

    async def _say_once(self, incoming: Incoming, conversation: Conversation, key: str) -> None:
        """Tell a Traditional Chinese client, once ever, why it gets English."""
        try:
            if not await self.service.store.first_notice(key):
                return
            await self.pacer.send(
                conversation,
                Priority.ANSWER,
                partial(conversation.post, render.info(HANT_FALLBACK)),
                what="notice",
                adapter=incoming.platform,
            )
        except (StoreError, TimeoutError, Undeliverable) as exc:
            log.warning("could not say why a client gets English: %s", exc)

    async def _handle(self, incoming: Incoming, conversation: Conversation) -> None:
        if incoming.press is not None:
            await self._press(incoming, conversation)
            return
        try:
            if incoming.file is not None:  # nobody unknown makes the bot download anything
                self.policy.check_user(incoming)
                text = await file_text(incoming.text, incoming.file)
                incoming = dataclasses.replace(incoming, text=text, file=None)
            command = parse_command(
                incoming.text,
                default_platform=self.planner.default_platform,
                max_images=self.settings.mirror_max_images,
                bot_username=incoming.bot_username,
            )
            if command is None:
                return
            self.policy.check_user(incoming)
            if isinstance(command, MirrorCommand):
                await self._mirror(incoming, conversation, command)
                return
            if isinstance(command, WatchCommand):
                await self._watch(incoming, conversation, command)
                return
            if isinstance(command, PlanCommand):
                view = await self._plan(incoming, command)
            else:
                view = await self._answer_at_once(incoming, command)
        except Ambiguous as exc:  # a question, not a failure
            view = translated(partial(render.info, text_of(exc)))
        except UsageError as exc:
            view = translated(partial(render.error, text_of(exc), usage=True))
        except StoreError as exc:
            log.error("the store failed: %s", exc.__cause__ or exc)
            view = translated(partial(render.error, text_of(exc)))
        except MirrorError as exc:
            view = translated(partial(render.error, text_of(exc)))
        except (TimeoutError, Undeliverable) as exc:
            log.error("could not answer a %s command: %s", incoming.platform, exc)
            return
        except Exception:
            log.exception("could not handle a %s command", incoming.platform)
            view = render.error(
                _("Something went wrong on my side; the bot's log has the details.")
            )
        try:
            await self.pacer.send(
                conversation,
                Priority.ANSWER,
                partial(conversation.post, view),
                what="answer",
                adapter=incoming.platform,
            )
        except (TimeoutError, Undeliverable) as exc:
            log.error("could not answer a %s command: %s", incoming.platform, exc)

    async def _press(self, incoming: Incoming, conversation: Conversation) -> None:
        """A button: its stored command, run as if its presser typed it, once. Anything that
        stops it before it runs is told to the presser alone; the chat sees nothing."""
        assert incoming.press is not None
        press = incoming.press
        requester = f"{incoming.platform}:{incoming.user_id}"
        chat = f"{incoming.platform}:{incoming.chat_id}"
        store = self.service.store
        action = None
        try:
            self.policy.check_user(incoming)
            action = await store.get_action(press.action_id)
            if action is None or action.chat != chat:
                refusal: str | None = actions.UNKNOWN
            elif time.time() - action.created > actions.MAX_AGE_SECONDS:
                refusal = actions.EXPIRED
            elif action.owner != requester and not self.policy.is_admin(incoming):
                refusal = actions.not_yours(action.owner)
            elif not await store.use_action(action.id):
                refusal = actions.USED
            else:
                refusal = None
        except Denied as exc:
            refusal = text_of(exc)
        except StoreError as exc:
            log.error("the store failed: %s", exc.__cause__ or exc)
            refusal = text_of(exc)
        if refusal is not None or action is None:
            try:
                await press.answer_privately(localize(refusal) or _(actions.UNKNOWN))
            except Exception as exc:  # the chat's trouble: the presser can press again
                log.error("could not answer a %s button: %s", incoming.platform, exc)
            return
        log.info("button %s pressed by %s", press.action_id, requester)
        await self.handle(replace(incoming, text=action.command, press=None), conversation)

    async def _answer_at_once(
        self,
        incoming: Incoming,
        command: HelpCommand
        | HistoryCommand
        | StatusCommand
        | CancelCommand
        | ConfirmCommand
        | TagsCommand
        | InspectCommand
        | WatchesCommand
        | UnwatchCommand
        | LanguageCommand,
    ) -> MessageView:
        """The commands answered with one message and no job to follow."""
        chat = f"{incoming.platform}:{incoming.chat_id}"
        store = self.service.store
        if isinstance(command, HelpCommand):
            return render.help_text()
        if isinstance(command, LanguageCommand):
            return await self._choose_language(incoming, command.language)
        if isinstance(command, HistoryCommand):
            return render.history(await store.history(chat))
        if isinstance(command, StatusCommand):
            if command.job_id is None:
                limits = self.service.engines.pull_limits()
                return render.status_list(await store.recent_jobs(chat), limits)
            job = self.service.active(command.job_id) or await store.get_job(command.job_id)
            if job is None or job.chat != chat:
                return render.error(
                    _("There is no job `{job}` in this chat.").format(job=command.job_id[:20])
                )
            if job.finished:
                return render.answer(job, self.render_options)
            return render.progress(job)
        if isinstance(command, TagsCommand | InspectCommand):
            return await self._look(incoming, command)
        if isinstance(command, WatchesCommand):
            return render.watches(await store.watches(chat))
        if isinstance(command, UnwatchCommand):
            return await self._unwatch(incoming, command.watch_id)
        if isinstance(command, ConfirmCommand):
            return await self._confirm(incoming, command)
        return await self._cancel(incoming, command.job_id)

    async def _look(self, incoming: Incoming, command: TagsCommand | InspectCommand) -> MessageView:
        """``/tags`` and ``/inspect``: registry reads, from allowed sources only; buttons
        to mirror what is shown, stored as the asker's before the answer goes out."""
        self.policy.check_source(command.image)
        lookups = self.lookups.get()
        key = new_job_id()
        if isinstance(command, TagsCommand):
            found = await lookups.tags(command.image, command.pattern)
            view = render.tag_list(found, command.pattern)
            buttons = actions.mirror_tags(key, found.ref, found.tags)
        else:
            seen = await lookups.inspect(command.image)
            copies = await self.service.store.copies_of(str(command.image))
            view = render.inspection(seen, copies)
            several = len(seen.platforms) > 1 and self.planner.default_platform is not None
            buttons = actions.mirror_inspected(key, seen.ref, every_platform=several)
        owner, chat = (
            f"{incoming.platform}:{incoming.user_id}",
            f"{incoming.platform}:{incoming.chat_id}",
        )
        await self.service.store.add_actions(actions.owned(owner, chat, buttons))
        view = dataclasses.replace(view, actions=buttons)
        if command.corrected_from is not None:
            read = render.read_as(command.corrected_from, command.image.familiar)
            view = dataclasses.replace(view, lines=(read, *view.lines))
        return view

    async def _cancel(self, incoming: Incoming, job_id: str) -> MessageView:
        job = self.service.active(job_id)
        requester = f"{incoming.platform}:{incoming.user_id}"
        if job is None:
            return render.error(_("Job `{job}` is not running.").format(job=job_id[:20]))
        if job.requester != requester and not self.policy.is_admin(incoming):
            return render.error(
                _("Only the requester or an admin may cancel job {job}.").format(job=job.id)
            )
        await self.service.cancel(job.id)
        return render.info(_("Job {job} cancelled.").format(job=job.id))

    async def _choose_language(self, incoming: Incoming, language: str | None) -> MessageView:
        """Store the sender's language (None: back to their client's) and confirm in it."""
        user = f"{incoming.platform}:{incoming.user_id}"
        await self.service.store.set_language(user, language)
        choice = await self.languages.of(incoming)
        with speaking(choice.language):
            if language is None:
                return render.info(_("I will answer you in your client's language again."))
            if language == ENGLISH:
                return render.info(_("I will answer you in English."))
            return render.info(_("I will answer you in Simplified Chinese."))

    async def _confirm(self, incoming: Incoming, command: ConfirmCommand) -> MessageView:
        """ "Copy 3.2 GB": the job service lets the waiting image go on (the Cancel beside it
        is ``/cancel``)."""
        job = self.service.active(command.job_id)
        if job is None or job.chat != f"{incoming.platform}:{incoming.chat_id}":
            return render.error(_("Job `{job}` is not running.").format(job=command.job_id[:20]))
        if job.requester != f"{incoming.platform}:{incoming.user_id}" and not (
            self.policy.is_admin(incoming)
        ):
            return render.error(
                _("Only the requester or an admin may confirm job {job}.").format(job=job.id)
            )
        waiting = [
            item
            for idx, item in enumerate(job.items)
            if item.status is ItemStatus.AWAITING and command.item in (None, idx)
        ]
        if not await self.service.confirm(job.id, command.item):
            return render.info(
                _("Nothing in job {job} is waiting for an answer.").format(job=job.id)
            )
        return render.confirmed(job, waiting)

    # -- mirroring ----------------------------------------------------------------------------

    async def _plan(self, incoming: Incoming, command: PlanCommand) -> MessageView:
        """Over MIRROR_MAX_IMAGES: each image planned through the policy and measured, and a
        "Copy all" only an admin's press acts on (its command is the list with --confirm)."""
        mirror = command.mirror
        items = self.planner.plan(
            mirror.images, mirror.platform, explicit=mirror.platform_explicit,
            readings=mirror.readings,
        )  # fmt: skip
        sizes = await self.service.measure(items)
        platform = (
            f" --platform {platform_text(mirror.platform)}" if mirror.platform_explicit else ""
        )
        typed = " ".join(str(spec) for spec in mirror.images)
        total = human_bytes(sum(size for size in sizes if size is not None))
        button = actions.copy_all(
            new_job_id(), f"/mirror --confirm{platform} {typed}", len(items), total
        )
        chat = f"{incoming.platform}:{incoming.chat_id}"
        await self.service.store.add_actions(actions.owned(actions.ADMINS, chat, [button]))
        admin = self.policy.is_admin(incoming)
        return render.bulk_plan(items, sizes, command.limit, button, admin=admin)

    async def _mirror(
        self, incoming: Incoming, conversation: Conversation, command: MirrorCommand
    ) -> None:
        limit = self.settings.mirror_max_images
        if len(command.images) > limit and not self.policy.is_admin(incoming):
            raise UsageError(
                Text(
                    "Only an admin may confirm more than {limit} images in one command.",
                    limit=limit,
                )
            )
        items = self.planner.plan(
            command.images,
            command.platform,
            explicit=command.platform_explicit,
            readings=command.readings,
        )
        requester = f"{incoming.platform}:{incoming.user_id}"
        if self.policy.rate is not None:
            since = time.time() - self.policy.rate.seconds
            used = await self.service.store.count_items_since(requester, since)
            self.policy.check_rate(incoming, used, len(items))
        await self.service.check_targets(items)
        job = Job(
            id=new_job_id(),
            requester=requester,
            chat=f"{incoming.platform}:{incoming.chat_id}",
            items=items,
            confirmed=command.confirmed and len(items) > limit,  # the bulk plan showed sizes
        )
        await self._start(incoming.platform, conversation, job, command.pasted)

    async def _start(
        self,
        adapter: str,
        conversation: Conversation,
        job: Job,
        pasted: PastedFiles | None = None,
    ) -> None:
        """Store, acknowledge, store where, start and follow: the one way a job begins."""
        store = self.service.store
        ack = translated(partial(render.acknowledgement, job))
        asks = self.settings.mirror_confirm_bytes and not job.confirmed
        ahead = actions.confirmations(job) if asks else ()
        await store.add_actions(actions.stored(job, (*ack.actions, *ahead)))  # before shown
        await store.add_job(job)  # failing here, nobody was told and nothing runs
        with job_context(job.id):  # the live message and the follower log with the job's id
            try:
                reply = await self.pacer.send(
                    conversation,
                    Priority.ACK,
                    partial(conversation.post, ack),
                    what="acknowledgement",
                    adapter=adapter,
                )
            except (TimeoutError, Undeliverable):
                await self._never_started(job)
                raise
            job.reply_ref = f"{adapter}:{reply.ref}"
            try:
                await store.set_reply_ref(job)
            except StoreError as exc:  # told, but a restart could not find the thread again
                log.error("job %s: the store failed: %s", job.id, exc.__cause__ or exc)
                await self._never_started(job)
                await self.pacer.send(
                    conversation,
                    Priority.ANSWER,
                    partial(reply.edit, render.error(text_of(exc))),
                    what="error",
                    adapter=adapter,
                )
                return
            live = LiveMessage(self.pacer, conversation, reply, initial=ack, adapter=adapter)
            task = self.service.start(job, _progress_to(live, current(), readers()))
            self._follow(job, task, conversation, live, pasted)

    async def _never_started(self, job: Job) -> None:
        """Fail a stored job that will not run; if the store fails too, recovery does it."""
        try:
            await self.service.fail_interrupted(job, NOT_ACKNOWLEDGED)
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
        long_job = time.monotonic() - started >= self.settings.mirror_long_job_seconds
        extra = rewrite(job.items, pasted) if pasted is not None else ()
        answer = partial(render.answer, job, self.render_options, notify=long_job, rewrite=extra)
        final = translated(answer)
        try:
            await self.service.store.add_actions(actions.stored(job, final.actions))
        except StoreError as exc:  # the answer still goes out, without buttons nobody could use
            log.error("job %s: its buttons were not stored: %s", job.id, exc)
            final = translated(lambda: replace(answer(), actions=()))
        await live.finish(translated(partial(render.progress, job)), final)

    # -- watches ------------------------------------------------------------------------------

    async def _watch(
        self, incoming: Incoming, conversation: Conversation, command: WatchCommand
    ) -> None:
        """Stored first, then announced (its thread hears of every change), then checked at
        once: the first check mirrors now."""
        chat = f"{incoming.platform}:{incoming.chat_id}"
        store = self.service.store
        limit = self.settings.mirror_max_watches
        if limit == 0:
            raise UsageError(Text("Watches are off on this bot (MIRROR_MAX_WATCHES is 0)."))
        if len(await store.watches(chat)) >= limit:
            raise UsageError(
                Text(
                    "This chat already has {limit} watches, the most it may keep "
                    "(MIRROR_MAX_WATCHES); stop one with /unwatch ID.",
                    limit=limit,
                )
            )
        tag = "latest" if is_tag_filter(command.pattern) else command.pattern
        self.planner.plan(  # the policy and the target, before anything is stored
            [parse_image_spec(f"{command.image.name}:{tag}")], command.platform, explicit=True
        )
        watch = Watch(
            id=new_job_id(),
            requester=f"{incoming.platform}:{incoming.user_id}",
            chat=chat,
            image=command.image,
            pattern=command.pattern,
            platform=command.platform,
        )
        await store.add_watch(watch)
        try:
            reply = await self.pacer.send(
                conversation,
                Priority.ACK,
                partial(conversation.post, render.watch_started(watch, self._interval())),
                what="watch",
                adapter=incoming.platform,
            )
        except (TimeoutError, Undeliverable):
            await store.delete_watch(watch.id)  # nobody heard of it: it does not exist
            raise
        watch.reply_ref = f"{incoming.platform}:{reply.ref}"
        await store.set_watch_reply_ref(watch)
        if self.watcher is not None:
            self.watcher.wake()

    async def _unwatch(self, incoming: Incoming, watch_id: str) -> MessageView:
        store = self.service.store
        watch = await store.get_watch(watch_id)
        if watch is None or watch.chat != f"{incoming.platform}:{incoming.chat_id}":
            return render.error(
                _("There is no watch `{watch}` in this chat.").format(watch=watch_id[:20])
            )
        requester = f"{incoming.platform}:{incoming.user_id}"
        if watch.requester != requester and not self.policy.is_admin(incoming):
            return render.error(
                _("Only the requester or an admin may stop watch {watch}.").format(watch=watch.id)
            )
        await store.delete_watch(watch.id)
        return render.info(
            _("Watch {watch} stopped: {image} is no longer checked.").format(
                watch=watch.id, image=watch.shown
            )
        )

    def _interval(self) -> float:
        return self.watcher.interval if self.watcher else self.settings.mirror_watch_interval

    async def _watch_fired(self, watch: Watch, tags: list[str]) -> None:
        """Mirror what a watch saw move, as a job posted where the watch was made."""
        try:
            reopened = await self._reopen(watch.reply_ref)
        except (TimeoutError, Undeliverable) as exc:
            raise MirrorError(CHAT_GONE) from exc
        if reopened is None:
            raise MirrorError(CHAT_GONE)
        platform, conversation, _ = reopened
        specs = [parse_image_spec(f"{watch.image.name}:{tag}") for tag in tags]
        items = self.planner.plan(specs, watch.platform, explicit=True)
        await self.service.check_targets(items)
        job = Job(
            id=new_job_id(),
            requester=watch.requester,
            chat=watch.chat,
            items=items,
            origin=render.watch_fired(watch, tags),
        )
        choice = await self.languages.choice_of(watch.requester)
        try:
            with speaking(choice.language, readers=choice.readers(conversation)):
                await self._start(platform, conversation, job)
        except (TimeoutError, Undeliverable) as exc:
            raise MirrorError(CHAT_GONE) from exc

    def start_watching(
        self,
        adapters: Mapping[str, ChatAdapter],
        upstream: Upstream,
    ) -> Watcher:
        """Check every stored watch on schedule until the bot closes."""
        self._adapters = adapters
        self.watcher = Watcher(
            self.service.store,
            upstream,
            self._watch_fired,
            interval=self.settings.mirror_watch_interval,
        )
        self._watching.spawn(self.watcher.run(), name="watcher")
        return self.watcher

    def follow_fired_watches(self, adapters: Mapping[str, ChatAdapter]) -> None:
        """With a PostgreSQL store the workers check the watches: mirror and post what they
        saw move, here, where the watches were made (:mod:`mirror.queue.watching`)."""
        from mirror.queue.watching import FiredWatches  # procrastinate only for a queue

        self._adapters = adapters
        interval = self.settings.mirror_watch_interval  # a copy that could not start waits
        fired = FiredWatches(self.service.store, self._watch_fired, retry_after=interval)
        self._watching.spawn(fired.run(), name="fired-watches")

    # -- lifecycle ----------------------------------------------------------------------------

    async def _reopen(self, reply_ref: str | None) -> tuple[str, Conversation, Reply] | None:
        """The adapter, thread and message behind a stored ``adapter:opaque`` reply handle
        (a job's or a watch's), or None when that adapter is not running or lost the thread."""
        platform, _, ref = (reply_ref or "").partition(":")
        adapter = self._adapters.get(platform)
        reopened = await adapter.reopen(ref) if adapter is not None and ref else None
        if reopened is None:
            return None
        conversation, reply = reopened
        return platform, conversation, reply

    async def recover(self, adapters: Mapping[str, ChatAdapter]) -> int:
        """Resume jobs a restart interrupted, in the thread that asked; fail the orphans."""
        self._adapters = adapters
        resumed = 0
        for job in await self.service.store.unfinished_jobs():
            if job.reply_ref is None:  # stored, never acknowledged: it never started
                await self.service.fail_interrupted(job, NOT_ACKNOWLEDGED)
                continue
            reopened = await self._reopen(job.reply_ref)
            if reopened is None:
                await self.service.fail_interrupted(job, INTERRUPTED)
                continue
            platform, conversation, reply = reopened
            choice = await self.languages.choice_of(job.requester)
            languages = choice.readers(conversation)
            with job_context(job.id), speaking(choice.language, readers=languages):
                live = LiveMessage(self.pacer, conversation, reply, adapter=platform)
                live.update(translated(partial(render.progress, job)))
                task = self.service.start(job, _progress_to(live, choice.language, languages))
                self._follow(job, task, conversation, live)
            resumed += 1
        return resumed

    async def drain(self, stop: asyncio.Event) -> None:
        """Wait for running jobs to deliver their answers, unless asked to stop first."""
        await self._followers.wait(stop)

    async def aclose(self) -> None:
        """Stop the watches and the jobs first (they stay resumable), then the followers
        waiting on them."""
        await self._watching.aclose()
        await self.service.aclose()
        await self._followers.aclose()
        await self.pacer.aclose()
        await self.lookups.aclose()  # closing twice is harmless: the runtime closes it too

    async def __aenter__(self) -> MirrorBot:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _progress_to(live: LiveMessage, language: str, languages: tuple[str, ...]) -> JobListener:
    """Render every change in the requester's language (in each of ``languages`` where the
    chat shows several), whichever task reports it."""

    def listener(job: Job) -> None:
        with speaking(language, readers=languages):
            live.update(translated(partial(render.progress, job)))

    return listener
