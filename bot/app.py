"""The application: one handler for every adapter, from a message to its answer.

Adapters call :meth:`MirrorBot.handle` with who/where/what and a conversation to answer in.
It finds the command by name (:mod:`bot.commands`), refuses it to whoever may not run it, and
runs its handler, which either returns the answer to post or posts itself (a job or a watch,
acknowledged at once, before any registry traffic, and then followed in the background by
:mod:`bot.following`). Button presses (:mod:`bot.presses`), watches (:mod:`bot.watching`) and
recovery after a restart (:mod:`bot.recovery`) live in their own modules; this one wires them.

What stops a command is sorted by its root: a :class:`~mirror.errors.MirrorError` is one
sentence for the asker, shown as its class says (:func:`bot.render.refusal`); a
:class:`~bot.chat.ChatError` (or a delivery that gave up) means there is nobody to tell, so it
is logged; anything else is a bug, logged with its traceback, and the asker hears that much.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from bot import presses, recovery, render
from bot.approvals import Approvals
from bot.chat import ChatAdapter, ChatError, Conversation, Incoming
from bot.commands import Commands, Context, Services, discover
from bot.files import file_text
from bot.following import JobFollower
from bot.i18n import N_, _, speaking
from bot.languages import Languages
from bot.pacing import Pacer, Priority
from bot.planner import Planner
from bot.policy import Denied, Policy
from bot.runtime import LazyLookups
from bot.settings import Settings
from bot.view import MessageView, translated
from bot.watching import ChatWatches
from bot.web import Web
from mirror.errors import MirrorError
from mirror.jobs import JobService
from mirror.store import StoreError
from mirror.text import Text
from mirror.watches import Upstream, Watcher

if TYPE_CHECKING:
    from mirror.store.postgres import Pool

log = logging.getLogger(__name__)

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
        commands: Commands | None = None,
        web: Web | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.policy = policy
        self.planner = planner
        self.commands = commands or discover()
        """What people can type (every module of :mod:`bot.commands` unless given)."""
        self.pacer = Pacer()
        """Every post and edit of every job, per chat, by priority (:mod:`bot.pacing`)."""
        self.languages = Languages(service.store, settings.mirror_language)
        self.jobs = JobFollower(settings, service, self.pacer, render_options)
        self.watches = ChatWatches(
            settings, service, planner, self.pacer, self.languages, self.jobs
        )
        self.lookups = lookups or LazyLookups(settings, policy)
        """The bot's own registry reads, for ``/tags`` and ``/inspect``."""
        self.approvals = Approvals(
            settings, service, policy, self.pacer, self.languages, wake_watches=self._wake_watches
        )
        """Held requests: asking the admins, applying their answers (MIRROR_APPROVAL)."""
        self.services = Services(
            settings=settings,
            service=service,
            policy=policy,
            planner=planner,
            render_options=render_options,
            lookups=self.lookups,
            pacer=self.pacer,
            languages=self.languages,
            jobs=self.jobs,
            watches=self.watches,
            commands=self.commands,
            approvals=self.approvals,
            web=web,
        )

    def _wake_watches(self) -> None:
        if self.watches.watcher is not None:
            self.watches.watcher.wake()

    @property
    def watcher(self) -> Watcher | None:
        """The upstream checker, when this process runs one (:meth:`start_watching`)."""
        return self.watches.watcher

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
            await self._post(incoming, conversation, render.info(HANT_FALLBACK), "notice")
        except (StoreError, TimeoutError, ChatError) as exc:
            log.warning("could not say why a client gets English: %s", exc)

    async def _handle(self, incoming: Incoming, conversation: Conversation) -> None:
        if incoming.press is not None:
            command = await presses.pressed(incoming, self.service.store, self.policy)
            if command is not None:  # as if its presser typed it
                pressed = dataclasses.replace(incoming, text=command, press=None)
                await self.handle(pressed, conversation)
            return
        try:
            view = await self._run(incoming, conversation)
        except MirrorError as exc:
            if exc.__cause__ is not None:  # something underneath failed (the store)
                log.error("could not answer a %s command: %s", incoming.platform, exc.__cause__)
            view = translated(partial(render.refusal, exc, self.commands.usage_line()))
        except (TimeoutError, ChatError) as exc:
            log.error("could not answer a %s command: %s", incoming.platform, exc)
            return
        except Exception:
            log.exception("could not handle a %s command", incoming.platform)
            view = render.error(
                _("Something went wrong on my side; the bot's log has the details.")
            )
        if view is None:  # the command posted its own answer
            return
        try:
            await self._post(incoming, conversation, view, "answer")
        except (TimeoutError, ChatError) as exc:
            log.error("could not answer a %s command: %s", incoming.platform, exc)

    async def _run(self, incoming: Incoming, conversation: Conversation) -> MessageView | None:
        """Find the command, check who asks, run it."""
        if incoming.file is not None:  # nobody unknown makes the bot download anything
            self.policy.check_user(incoming)
            text = await file_text(incoming.text, incoming.file)
            incoming = dataclasses.replace(incoming, text=text, file=None)
        invocation = self.commands.parse(
            incoming.text,
            default_platform=self.planner.default_platform,
            max_images=self.settings.mirror_max_images,
            bot_username=incoming.bot_username,
            direct=not incoming.is_group,
        )
        if invocation is None:  # another bot's
            return None
        self.policy.check_user(incoming)
        name = invocation.command.name
        if invocation.command.admin_only and not self.policy.is_admin(incoming):
            raise Denied(Text("Only an admin may use `/{command}`.", command=name))
        return await invocation.run(Context(incoming, conversation, self.services))

    async def _post(
        self, incoming: Incoming, conversation: Conversation, view: MessageView, what: str
    ) -> None:
        await self.pacer.post(
            conversation, view, Priority.ANSWER, what=what, adapter=incoming.platform
        )

    # -- watches and restarts -----------------------------------------------------------------

    def start_watching(self, adapters: Mapping[str, ChatAdapter], upstream: Upstream) -> Watcher:
        """Check every stored watch on schedule until the bot closes."""
        return self.watches.start_watching(adapters, upstream)

    def follow_fired_watches(self, adapters: Mapping[str, ChatAdapter]) -> None:
        """With a PostgreSQL store the workers check the watches: post what they saw move."""
        self.watches.follow_fired_watches(adapters)

    async def start_approvals(
        self, adapters: Mapping[str, ChatAdapter], pool: Pool | None = None
    ) -> None:
        """Apply admins' answers as they come (and those taken while the bot was down); with
        PostgreSQL (``pool``, the store's) as it notifies them."""
        await self.approvals.refresh_sources()
        self.approvals.start(adapters, pool)

    async def recover(self, adapters: Mapping[str, ChatAdapter]) -> int:
        """Resume jobs a restart interrupted, in the thread that asked; fail the orphans."""
        return await recovery.recover(self.service, self.jobs, self.languages, adapters)

    # -- lifecycle ----------------------------------------------------------------------------

    async def drain(self, stop: asyncio.Event) -> None:
        """Wait for running jobs to deliver their answers, unless asked to stop first."""
        await self.jobs.drain(stop)

    async def aclose(self) -> None:
        """Stop the watches and the jobs first (they stay resumable), then the followers
        waiting on them."""
        await self.approvals.aclose()
        await self.watches.aclose()
        await self.service.aclose()
        await self.jobs.aclose()
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
