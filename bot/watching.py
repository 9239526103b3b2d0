"""Watches in chat: a ``/watch`` stored and announced, and what a watch saw move mirrored as a
job posted where the watch was made.

Upstream is checked by :class:`mirror.watches.Watcher` in this process (SQLite), or by the
workers, whose fired watches this process follows (PostgreSQL, :mod:`mirror.queue.watching`);
either way the job starts here, where the chat is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bot import approval_views, render
from bot.chat import ChatAdapter, ChatError, Conversation, Incoming
from bot.commands import UsageError
from bot.following import JobFollower
from bot.i18n import speaking
from bot.languages import Languages
from bot.pacing import Pacer, Priority
from bot.planner import Asked, Planner, grant
from bot.recovery import reopen
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.jobs import JobService
from mirror.models import Item, ItemStatus, Job, Watch, is_tag_filter, new_job_id
from mirror.naming import parse_image_spec
from mirror.platform import Platform
from mirror.reference import ImageRef
from mirror.tasks import TaskSet
from mirror.text import Text
from mirror.watches import Upstream, Watcher

CHAT_GONE = Text("The bot could not reach the chat where this watch was made.")
NEEDS_APPROVAL = Text(
    "This source now needs an admin's approval; stop this watch and make it again to ask."
)


class ChatWatches:
    def __init__(
        self,
        settings: Settings,
        service: JobService,
        planner: Planner,
        pacer: Pacer,
        languages: Languages,
        follower: JobFollower,
    ) -> None:
        self._settings = settings
        self._service = service
        self._planner = planner
        self._pacer = pacer
        self._languages = languages
        self._follower = follower
        self._adapters: Mapping[str, ChatAdapter] = {}
        self._tasks = TaskSet("watches")
        self.watcher: Watcher | None = None
        """Set when this process checks upstream itself (:meth:`start_watching`)."""

    async def add(
        self,
        incoming: Incoming,
        conversation: Conversation,
        image: ImageRef,
        pattern: str,
        platform: Platform | None,
        *,
        admin: bool = False,
    ) -> Watch:
        """Stored first, then announced (its thread hears of every change), then checked at
        once: the first check mirrors now. A source an admin must approve is held until one
        does (an ``admin``'s own watch is approved by asking): approved once, here; its later
        copies need no approval."""
        chat = f"{incoming.platform}:{incoming.chat_id}"
        requester = f"{incoming.platform}:{incoming.user_id}"
        store = self._service.store
        await self._check_room(chat)
        tag = "latest" if is_tag_filter(pattern) else pattern
        (planned,) = self._planner.plan(  # the policy and the target, before anything is stored
            [parse_image_spec(f"{image.name}:{tag}")], platform, explicit=True, asked=Asked.HOLD
        )
        held = planned.status is ItemStatus.AWAITING_APPROVAL
        watch = Watch(
            id=new_job_id(),
            requester=requester,
            chat=chat,
            image=image,
            pattern=pattern,
            platform=platform,
            held=held and not admin,
            approved_by=requester if held and admin else None,
        )
        await store.add_watch(watch)
        announcement = render.watch_started(watch, self.interval())
        if watch.held:
            announcement = replace(announcement, lines=(approval_views.watch_held(),))
        try:
            reply = await self._pacer.post(
                conversation, announcement, Priority.ACK, what="watch", adapter=incoming.platform
            )
        except (TimeoutError, ChatError):
            await store.delete_watch(watch.id)  # nobody heard of it: it does not exist
            raise
        watch.reply_ref = f"{incoming.platform}:{reply.ref}"
        await store.set_watch_reply_ref(watch)
        if self.watcher is not None:
            self.watcher.wake()
        return watch

    async def _check_room(self, chat: str) -> None:
        """MIRROR_MAX_WATCHES per chat (0: watches are off)."""
        limit = self._settings.mirror_max_watches
        if limit == 0:
            raise UsageError(Text("Watches are off on this bot (MIRROR_MAX_WATCHES is 0)."))
        if len(await self._service.store.watches(chat)) >= limit:
            raise UsageError(
                Text(
                    "This chat already has {limit} watches, the most it may keep "
                    "(MIRROR_MAX_WATCHES); stop one with /unwatch ID.",
                    limit=limit,
                )
            )

    def interval(self) -> float:
        """How often upstream is checked, as the announcement says."""
        return self.watcher.interval if self.watcher else self._settings.mirror_watch_interval

    async def fired(self, watch: Watch, tags: list[str]) -> None:
        """Mirror what a watch saw move, as a job posted where the watch was made."""
        try:
            reopened = await reopen(self._adapters, watch.reply_ref)
        except (TimeoutError, ChatError) as exc:
            raise MirrorError(CHAT_GONE) from exc
        if reopened is None:
            raise MirrorError(CHAT_GONE)
        platform, conversation, _ = reopened
        specs = [parse_image_spec(f"{watch.image.name}:{tag}") for tag in tags]
        items = self._planner.plan(specs, watch.platform, explicit=True, asked=Asked.HOLD)
        if watch.approved_by is not None:  # approved once, when it was made
            grant(items, watch.approved_by)
        if any(item.status is ItemStatus.AWAITING_APPROVAL for item in items):
            raise MirrorError(NEEDS_APPROVAL)
        await self._service.check_targets(items)
        await self._previous_copies(watch, tags, items)
        job = Job(
            id=new_job_id(),
            requester=watch.requester,
            chat=watch.chat,
            items=items,
            origin=render.watch_fired(watch, tags),
        )
        choice = await self._languages.choice_of(watch.requester)
        try:
            with speaking(choice.language, readers=choice.readers(conversation)):
                await self._follower.start(platform, conversation, job)
        except (TimeoutError, ChatError) as exc:
            raise MirrorError(CHAT_GONE) from exc

    async def _previous_copies(self, watch: Watch, tags: list[str], items: list[Item]) -> None:
        """A tag that moved (seen before, unlike a watch's first check or a filter's new tag):
        the copy it pointed at stays at the target by digest until it is pruned, and the
        answer says how to pull it (a rollback needs exactly that)."""
        for tag, item in zip(tags, items, strict=True):
            if tag not in watch.digests:
                continue
            previous = await self._service.store.last_success(str(item.target))
            if previous is None or previous.target_digest is None:
                continue
            by_digest = f"{item.target.name}@{previous.target_digest}"
            item.notes += (
                Text(
                    "The previous copy stays pullable by digest until it is pruned: "
                    "`docker pull {reference}`",
                    reference=by_digest,
                ),
            )

    def start_watching(self, adapters: Mapping[str, ChatAdapter], upstream: Upstream) -> Watcher:
        """Check every stored watch on schedule until the bot closes."""
        self._adapters = adapters
        self.watcher = Watcher(
            self._service.store,
            upstream,
            self.fired,
            interval=self._settings.mirror_watch_interval,
        )
        self._tasks.spawn(self.watcher.run(), name="watcher")
        return self.watcher

    def follow_fired_watches(self, adapters: Mapping[str, ChatAdapter]) -> None:
        """With a PostgreSQL store the workers check the watches: mirror and post what they
        saw move, here, where the watches were made (:mod:`mirror.queue.watching`)."""
        from mirror.queue.watching import FiredWatches  # procrastinate only for a queue

        self._adapters = adapters
        interval = self._settings.mirror_watch_interval  # a copy that could not start waits
        fired = FiredWatches(self._service.store, self.fired, retry_after=interval)
        self._tasks.spawn(fired.run(), name="fired-watches")

    async def aclose(self) -> None:
        await self._tasks.aclose()
