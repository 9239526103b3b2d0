"""Approval in chat (MIRROR_APPROVAL): held requests, admins' answers, and what the running bot
does with them.

A request whose source the policy asks about (:class:`bot.policy.Verdict`) is planned
``AWAITING_APPROVAL`` (:class:`bot.planner.Asked`), stored, acknowledged to its requester like
any job, and started: the job service holds those images before anything reaches their source
(:meth:`mirror.jobs.JobService.settle` lets them go). Then the admins are asked
(:meth:`Approvals.ask`): in MIRROR_ADMIN_CHAT, else each admin privately where the platform can
post first (:class:`bot.chat.Addressable`), with Approve / Approve this repository always / Deny.

An answer is written to the store as a :class:`~mirror.models.Decision` by whoever takes it —
``/approve`` and ``/deny`` in any chat an admin writes from, a button, ``mirror-bot approve`` —
with :func:`record`; the running bot alone applies it (:meth:`Approvals.apply`), since it
holds the request and the thread to tell. It looks for answers when one is taken here, every
second with SQLite, and when PostgreSQL notifies (:data:`~mirror.store.DECISIONS_CHANNEL`, and
every few seconds in case a notification was lost), so an answer taken while the bot was down
is applied at its next start. Identical held requests (same source, target and platform) share
one answer; a request nobody answers expires after :data:`HELD_FOR`, and its requester is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from bot import actions, approval_views
from bot.chat import Addressable, ChatAdapter, ChatError, ConfigurationError, Conversation
from bot.i18n import speaking
from bot.languages import Languages
from bot.pacing import Pacer, Priority
from bot.policy import Policy
from bot.recovery import reopen
from bot.settings import Settings
from bot.view import MessageView
from mirror.errors import MirrorError
from mirror.jobs import JobService
from mirror.models import ApprovedSource, Decision, Item, ItemStatus, Job, Watch, platform_text
from mirror.reference import ImageRef
from mirror.store import Store, StoreError
from mirror.tasks import TaskSet
from mirror.text import Text

if TYPE_CHECKING:
    from mirror.store.postgres import Pool

log = logging.getLogger(__name__)

HELD_FOR = 7 * 86400.0
"""A held request nobody answers expires after this long (its requester is told)."""
POLL_SECONDS = 1.0
"""How often a SQLite bot looks for answers taken elsewhere (``mirror-bot approve``)."""
NOTIFIED_POLL_SECONDS = 5.0
"""With PostgreSQL's notifications, a look now and then in case one was lost."""
WATCH_EXPIRY_SECONDS = 60.0
"""Held watches live in the store, not in memory: looked at for expiry this often."""


class NothingHeld(MirrorError):
    """An answer to a request that is not waiting for one."""


def denied_text(admin: str, reason: str | None) -> Text:
    if reason:
        return Text("Denied by an admin ({admin}): {reason}", admin=admin, reason=reason)
    return Text("Denied by an admin ({admin}).", admin=admin)


EXPIRED = Text(
    "No admin answered within 7 days, so this request expired; ask again, or ask an admin."
)


def never_approvable(source: ImageRef) -> Text:
    return Text(
        "`{registry}` is an internal address the operator did not name, so nobody can approve it.",
        registry=source.registry,
    )


# -- taking an answer: the command line and chat alike -----------------------------------------


@dataclass(frozen=True)
class Recorded:
    """An answer written for the running bot: to which request, and what it covers."""

    decision: Decision
    kind: str
    """``job`` or ``watch``."""
    images: tuple[ImageRef, ...]
    """The held sources it answers (a watch: its repository)."""
    always: tuple[str, ...] = ()
    """Repositories approved for good by this answer."""
    refused: tuple[str, ...] = ()
    """Repositories "always" could not approve: internal addresses nobody named."""


async def record(
    store: Store,
    policy: Policy,
    request: str,
    *,
    approve: bool,
    by: str,
    idx: int | None = None,
    always: bool = False,
    reason: str | None = None,
) -> Recorded:
    """Check that ``request`` (a job's or a watch's id) holds something to answer, approve its
    repositories for good when ``always`` (never an internal one the operator did not name),
    and write the answer for the running bot. Raises :class:`NothingHeld` (one sentence)."""
    job = await store.get_job(request)
    if job is not None:
        if idx is not None and not 0 <= idx < len(job.items):
            raise NothingHeld(
                Text(
                    "Job {job} has {count} images; number them from 1.",
                    job=job.id,
                    count=len(job.items),
                )
            )
        sources = tuple(
            item.source
            for i, item in enumerate(job.items)
            if item.status is ItemStatus.AWAITING_APPROVAL and idx in (None, i)
        )
        if not sources:
            raise NothingHeld(Text("Nothing in job {job} waits for approval.", job=job.id))
        kind = "job"
    else:
        watch = await store.get_watch(request)
        if watch is None or not watch.held:
            raise NothingHeld(
                Text("There is no request `{request}` waiting for approval.", request=request[:20])
            )
        sources, kind, idx = (watch.image,), "watch", None
    added: list[str] = []
    refused: list[str] = []
    if approve and always:
        for source in dict.fromkeys(s.repo_only for s in sources):
            if not policy.approvable(source):
                refused.append(source.name)
            else:
                await store.add_approved_source(ApprovedSource(source.name, by))
                added.append(source.name)
    decision = Decision(secrets.token_hex(8), request, idx, approve, by, reason)
    await store.add_decision(decision)
    return Recorded(decision, kind, sources, tuple(added), tuple(refused))


async def add_source(store: Store, policy: Policy, text: str, by: str) -> ApprovedSource:
    """``mirror-bot sources add REPOSITORY``: as "Approve this repository always" would."""
    source = repository(text)
    if not policy.approvable(source):
        raise ConfigurationError(never_approvable(source))
    approved = ApprovedSource(source.name, by)
    await store.add_approved_source(approved)
    return approved


def repository(text: str) -> ImageRef:
    """A repository as typed (``ghcr.io/org/app``, ``nginx``), without tag or digest."""
    from mirror.reference import parse_reference

    return parse_reference(text.strip()).repo_only


# -- the running bot: asking, applying, telling -------------------------------------------------


@dataclass
class Applied:
    """What one answer did in this process, for the admin who gave it."""

    decision: Decision
    settled: list[tuple[Job, int]] = field(default_factory=list)
    """Held images it let go or refused (its own request's, and identical ones elsewhere)."""
    watch: Watch | None = None
    """The watch it answered."""


class Approvals:
    """The bot's side: ask the admins about a held request, apply their answers, tell the
    requesters, expire what nobody answered."""

    def __init__(
        self,
        settings: Settings,
        service: JobService,
        policy: Policy,
        pacer: Pacer,
        languages: Languages,
        *,
        clock: Callable[[], float] = time.time,
        wake_watches: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._policy = policy
        self._pacer = pacer
        self._languages = languages
        self.clock = clock
        """Injectable: the tests move it a week on instead of sleeping."""
        self.wake_watches = wake_watches
        """Called when a watch is approved, so this process checks it now."""
        self._adapters: Mapping[str, ChatAdapter] = {}
        self._tasks = TaskSet("approvals")
        self._wake = asyncio.Event()
        self._applying = asyncio.Lock()
        self._watch_expiry_at = 0.0

    @property
    def store(self) -> Store:
        return self._service.store

    async def refresh_sources(self) -> None:
        """The stored approved repositories, into the policy (another process may add some)."""
        found = await self.store.approved_sources()
        self._policy.approved = frozenset(source.repository.lower() for source in found)

    # -- asking --------------------------------------------------------------------------------

    async def ask(self, job: Job, who: str | None = None) -> int:
        """Ask the admins about the held images of ``job`` (not about those an identical
        request already asked about: one answer will do for both). How many places were
        asked."""
        held = [
            i for i, item in enumerate(job.items) if item.status is ItemStatus.AWAITING_APPROVAL
        ]
        asked_before = {
            _key(other.items[i]) for other, i in self._service.held() if other.id != job.id
        }
        if not held or all(_key(job.items[i]) in asked_before for i in held):
            return 0

        def view() -> MessageView:
            return approval_views.job_request(job, held, who)

        return await self._ask(job.id, view)

    async def ask_watch(self, watch: Watch, who: str | None = None) -> int:
        return await self._ask(watch.id, lambda: approval_views.watch_request(watch, who))

    async def _ask(self, request: str, view: Callable[[], MessageView]) -> int:
        buttons = approval_views.buttons(request)
        await self.store.add_actions(actions.owned(actions.ADMINS, actions.ANYWHERE, buttons))
        asked = 0
        for platform, conversation, language in await self._admin_chats():
            with speaking(language):
                shown = view()
            try:
                await self._pacer.post(
                    conversation, shown, Priority.ANSWER, what="approval request", adapter=platform
                )
            except (TimeoutError, ChatError) as exc:
                log.warning("could not ask an admin about %s on %s: %s", request, platform, exc)
                continue
            asked += 1
        if not asked:
            log.error(
                "nobody could be asked about %s; an admin can answer with "
                "`mirror-bot approve %s` or `mirror-bot deny %s`",
                request,
                request,
                request,
            )
        return asked

    async def _admin_chats(self) -> list[tuple[str, Conversation, str]]:
        """Where to ask, in which language: MIRROR_ADMIN_CHAT, else every admin privately on
        a running platform that can post first."""
        found: list[tuple[str, Conversation, str]] = []
        if self._settings.mirror_admin_chat:
            platform, _, chat_id = self._settings.mirror_admin_chat.partition(":")
            adapter = self._adapters.get(platform)
            if isinstance(adapter, Addressable):
                try:
                    found.append((platform, await adapter.open_chat(chat_id), self._operator()))
                except (TimeoutError, ChatError) as exc:
                    log.warning("could not open MIRROR_ADMIN_CHAT %s: %s", chat_id, exc)
            return found
        for admin in self._settings.mirror_admins:
            platform, _, user_id = admin.partition(":")
            adapter = self._adapters.get(platform)
            if not isinstance(adapter, Addressable):
                continue
            try:
                conversation = await adapter.open_private(user_id)
            except (TimeoutError, ChatError) as exc:
                log.warning("could not write to admin %s privately: %s", admin, exc)
                continue
            found.append((platform, conversation, await self._languages.of_user(admin)))
        return found

    def _operator(self) -> str:
        default = self._languages.default
        return "en" if default == "auto" else default

    # -- applying ------------------------------------------------------------------------------

    async def decide(
        self,
        request: str,
        *,
        approve: bool,
        by: str,
        idx: int | None = None,
        always: bool = False,
        reason: str | None = None,
    ) -> tuple[Recorded, Applied | None]:
        """An answer taken in this process (``/approve``, ``/deny``, a button): recorded as
        from anywhere else, then applied at once. The applied part is None when the request
        is held but not running here yet (applied when it runs)."""
        async with self._applying:
            recorded = await record(
                self.store,
                self._policy,
                request,
                approve=approve,
                by=by,
                idx=idx,
                always=always,
                reason=reason,
            )
            applied = await self._apply(recorded.decision)
            await self.refresh_sources()
        return recorded, applied

    async def apply(self) -> list[Applied]:
        """Apply every answer taken so far, then expire what waited too long; one pass at a
        time. Raises :class:`StoreError` when the store cannot be read."""
        async with self._applying:
            done = [
                applied
                for decision in await self.store.decisions()
                if (applied := await self._apply(decision)) is not None
            ]
            if done:
                await self.refresh_sources()
            await self._expire()
            return done

    async def _apply(self, decision: Decision) -> Applied | None:
        """One answer; None when its request is held but not running here yet (recovery
        starts it, and the next pass applies it)."""
        job = self._service.active(decision.request)
        if job is None:
            watch = await self.store.get_watch(decision.request)
            if watch is not None and watch.held:
                applied = Applied(decision, watch=watch)
                await self._decide_watch(watch, decision)
                await self.store.delete_decision(decision.id)
                return applied
            stored = await self.store.get_job(decision.request)
            if stored is not None and any(
                i.status is ItemStatus.AWAITING_APPROVAL for i in stored.items
            ):
                return None
            await self.store.delete_decision(decision.id)  # answered already, or gone
            return Applied(decision)
        applied = Applied(decision)
        keys = {
            _key(item)
            for i, item in enumerate(job.items)
            if item.status is ItemStatus.AWAITING_APPROVAL and decision.idx in (None, i)
        }
        for other, i in self._service.held():
            own = other.id == job.id and decision.idx in (None, i)
            if not (own or (other.id != job.id and _key(other.items[i]) in keys)):
                continue
            if await self._settle(other, i, decision):
                applied.settled.append((other, i))
        await self.store.delete_decision(decision.id)
        await self._tell_approved(applied)
        return applied

    async def _settle(self, job: Job, idx: int, decision: Decision) -> bool:
        item = job.items[idx]
        if not decision.approve:
            reason = denied_text(decision.decided_by, decision.reason)
            return await self._service.settle(
                job.id, idx, ItemStatus.DENIED, decision.decided_by, reason
            )
        if not self._policy.approvable(item.source):  # the operator un-named it since
            return await self._service.settle(
                job.id, idx, ItemStatus.DENIED, decision.decided_by, never_approvable(item.source)
            )
        return await self._service.settle(job.id, idx, ItemStatus.QUEUED, decision.decided_by, None)

    async def _tell_approved(self, applied: Applied) -> None:
        """Each requester whose images were let go hears it in their thread (a denial is the
        job's own answer: its images end)."""
        if not applied.decision.approve:
            return
        jobs: dict[str, tuple[Job, list[int]]] = {}
        for job, idx in applied.settled:
            if job.items[idx].status is not ItemStatus.DENIED:
                jobs.setdefault(job.id, (job, []))[1].append(idx)
        for job, indexes in jobs.values():
            view = partial(approval_views.approved, job, indexes, applied.decision.decided_by)
            await self._tell(job.requester, job.reply_ref, view)

    async def _decide_watch(self, watch: Watch, decision: Decision) -> None:
        if decision.approve and self._policy.approvable(watch.image):
            if await self.store.approve_watch(watch.id, decision.decided_by):
                view = partial(approval_views.watch_approved, watch, decision.decided_by)
                await self._tell(watch.requester, watch.reply_ref, view)
                if self.wake_watches is not None:
                    self.wake_watches()
            return
        reason = (
            denied_text(decision.decided_by, decision.reason)
            if not decision.approve
            else never_approvable(watch.image)
        )
        await self.store.delete_watch(watch.id)
        view = partial(approval_views.watch_ended, watch, reason)
        await self._tell(watch.requester, watch.reply_ref, view)

    async def _expire(self) -> None:
        """Held images and watches older than :data:`HELD_FOR` end, saying so."""
        cutoff = self.clock() - HELD_FOR
        for job, idx in self._service.held():
            if job.created <= cutoff:
                await self._service.settle(job.id, idx, ItemStatus.CANCELLED, None, EXPIRED)
        if self.clock() < self._watch_expiry_at:
            return
        self._watch_expiry_at = self.clock() + WATCH_EXPIRY_SECONDS
        for watch in await self.store.watches():
            if watch.held and watch.created <= cutoff:
                await self.store.delete_watch(watch.id)
                view = partial(approval_views.watch_ended, watch, EXPIRED)
                await self._tell(watch.requester, watch.reply_ref, view)

    async def _tell(
        self, requester: str, reply_ref: str | None, view: Callable[[], MessageView]
    ) -> None:
        """A note in the requester's thread, in their language; a chat out of reach is logged
        (the job's own answer, or ``/status``, still says what happened)."""
        try:
            reopened = await reopen(self._adapters, reply_ref)
        except (TimeoutError, ChatError) as exc:
            log.warning("could not reach %s's thread: %s", requester, exc)
            return
        if reopened is None:
            return
        platform, conversation, _ = reopened
        with speaking(await self._languages.of_user(requester)):
            shown = view()
        try:
            await self._pacer.post(
                conversation, shown, Priority.ANSWER, what="approval", adapter=platform
            )
        except (TimeoutError, ChatError) as exc:
            log.warning("could not tell %s about an approval: %s", requester, exc)

    # -- following answers taken elsewhere -----------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self, adapters: Mapping[str, ChatAdapter], pool: Pool | None = None) -> None:
        """Apply answers until the bot closes: looked for every :data:`POLL_SECONDS`, or, on
        PostgreSQL (``pool``, the store's), when notified and every few seconds."""
        self._adapters = adapters
        poll = POLL_SECONDS
        if pool is not None:
            from mirror.queue.app import listen  # psycopg only for those who use it
            from mirror.store import DECISIONS_CHANNEL

            poll = NOTIFIED_POLL_SECONDS
            self._tasks.spawn(
                listen(
                    pool,
                    DECISIONS_CHANNEL,
                    connected=self.wake,
                    heard=lambda _payload: self.wake(),
                ),
                name="decisions-listener",
            )
        self._tasks.spawn(self._run(poll), name="approvals")

    async def _run(self, poll: float) -> None:
        while True:
            self._wake.clear()
            try:
                await self.apply()
            except StoreError as exc:
                log.error("approvals: the store failed: %s", exc.__cause__ or exc)
            except (TimeoutError, ChatError) as exc:
                log.error("approvals: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()

    async def aclose(self) -> None:
        await self._tasks.aclose()


def _key(item: Item) -> tuple[str, str, str]:
    """Identical requests: same source, target and platform."""
    return (str(item.source), str(item.target), platform_text(item.platform))


def admin_chat_problem(settings: Settings, platforms: Iterable[str]) -> str | None:
    """Why MIRROR_ADMIN_CHAT cannot be used with the chat platforms configured here, or None."""
    if not settings.mirror_admin_chat:
        return None
    platform = settings.mirror_admin_chat.partition(":")[0]
    names = sorted(platforms)
    if platform not in names:
        return (
            f"MIRROR_ADMIN_CHAT: `{platform}` is not a configured chat platform here "
            f"(configured: {', '.join(names) or 'none'}); name a chat of one of them."
        )
    return None


def check_admin_chat(settings: Settings, adapters: Mapping[str, ChatAdapter]) -> None:
    """MIRROR_ADMIN_CHAT names a platform that runs here and can post first; else one
    sentence (``mirror-bot run`` exits 2)."""
    problem = admin_chat_problem(settings, adapters)
    if problem is not None:
        raise ConfigurationError(problem)
    if not settings.mirror_admin_chat:
        return
    platform = settings.mirror_admin_chat.partition(":")[0]
    if not isinstance(adapters[platform], Addressable):
        raise ConfigurationError(
            f"MIRROR_ADMIN_CHAT: the {platform} adapter cannot post where nobody asked, so "
            "approvals cannot be asked there; name a chat of another platform."
        )
