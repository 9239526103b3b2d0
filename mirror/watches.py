"""Watches (issue 15): check upstream on a schedule, and say which tags need a new copy.

A watch on a tag (``nginx:latest``) is due every ``interval`` (jittered, so a hundred watches
made together do not check together); its check is one HEAD (no pull counted by Docker Hub).
When the digest moved, the tag is handed to ``fire``. A filter watch (``nginx:1.27.*``,
``~1.27``) lists the tags and hands over the new matching ones. The first check of a watch
mirrors now: the tag itself, or the newest tag a filter matches.

This module knows no chat: ``fire`` (the bot's) stores and announces the copy, and returns
once it is stored; only then does the watch remember what it saw, so a change whose copy
could not be started is seen again at the next check. A pull limit pauses the watch until it
lifts, and nothing here ever loops faster than the interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from mirror.engines.chooser import EngineChooser
from mirror.errors import EngineUnavailable, MirrorError, PullLimitReached
from mirror.models import Watch
from mirror.reference import ImageRef
from mirror.store import Store, StoreError
from mirror.tags import matches, newest_first
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.engines.registry.engine import RegistryEngine

log = logging.getLogger(__name__)

JITTER = 0.1
"""Each interval is drawn from ±10 % of ``MIRROR_WATCH_INTERVAL``."""

MAX_NEW_TAGS = 5
"""A filter that suddenly matches many new tags mirrors the newest few, not all at once."""

IDLE_SECONDS = 3600.0
"""With no watch at all, look at the store again after this long (or when woken)."""


class Upstream(Protocol):
    """What a check may ask a source registry: HEAD requests and tag lists, never a pull."""

    async def head_digest(self, ref: ImageRef) -> str | None: ...

    async def tags(self, ref: ImageRef) -> list[str]: ...


Fire = Callable[[Watch, list[str]], Awaitable[None]]
"""Mirror these tags of the watch's image and tell its chat; raises when it could not."""


class Watcher:
    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        fire: Fire,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._upstream = upstream
        self._fire = fire
        self.interval = interval
        self._clock = clock
        self._wake = asyncio.Event()

    def next_after(self, now: float) -> float:
        return now + self.interval * random.uniform(1 - JITTER, 1 + JITTER)

    def wake(self) -> None:
        """A watch was added: look at the store now rather than after the current sleep."""
        self._wake.set()

    async def run(self) -> None:
        """Check what is due, sleep until the next is due; until cancelled."""
        while True:
            self._wake.clear()
            try:
                upcoming = await self.check_due()
            except StoreError as exc:
                log.error("watches: the store failed: %s", exc.__cause__ or exc)
                upcoming = self._clock() + self.interval
            await self._sleep(upcoming - self._clock() if upcoming else IDLE_SECONDS)

    async def check_due(self) -> float | None:
        """Check every watch that is due once; when the next one is due (None: no watch).
        The one pass both schedules share: this process's loop, and the queue's periodic
        task on a PostgreSQL store. Raises :class:`StoreError` when the store cannot list."""
        for watch in await self._store.watches():
            due = _live(watch) and watch.next_check <= self._clock()
            if due and await self._store.get_watch(watch.id) is not None:  # not stopped
                await self.check(watch)
        upcoming = [w.next_check for w in await self._store.watches() if _live(w)]
        return min(upcoming) if upcoming else None

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def check(self, watch: Watch) -> None:
        """One check of one watch, its outcome stored; never raises but cancellation."""
        now = self._clock()
        try:
            seen = await self._look(watch)
            due = self._due(watch, seen)
            if due:
                await self._fire(watch, due)
        except PullLimitReached as exc:
            log.warning("watch %s paused: %s", watch.id, exc)
            watch.error = text_of(exc)
            watch.next_check = max(exc.lifts_at.timestamp(), now + 1.0)
            watch.last_check = now
            await self._save(watch)
            return
        except MirrorError as exc:
            log.warning("watch %s: %s", watch.id, exc)
            watch.error = text_of(exc)
        except Exception:
            log.exception("watch %s: the check failed", watch.id)
            watch.error = Text("The check failed; the bot's log has the details.")
        else:
            watch.digests = seen
            watch.error = None
        watch.last_check = now
        watch.next_check = self.next_after(now)
        await self._save(watch)

    async def _save(self, watch: Watch) -> None:
        try:
            await self._store.save_watch_check(watch)
        except StoreError as exc:
            log.error("watch %s: the store failed: %s", watch.id, exc.__cause__ or exc)

    async def _look(self, watch: Watch) -> dict[str, str]:
        """What upstream holds now: ``{tag: digest}``, or ``{tag: ""}`` per matching tag."""
        if not watch.is_filter:
            digest = await self._upstream.head_digest(watch.ref_for(watch.pattern))
            return {watch.pattern: digest} if digest else {}
        tags = await self._upstream.tags(watch.image)
        return {tag: "" for tag in newest_first(tags) if matches(watch.pattern, tag)}

    def _due(self, watch: Watch, seen: dict[str, str]) -> list[str]:
        """The tags to mirror now: first check, a moved digest, new matching tags."""
        if not watch.is_filter:
            return [tag for tag, digest in seen.items() if watch.digests.get(tag) != digest]
        if watch.last_check is None:
            return list(seen)[:1]  # the newest matching tag, now
        return [tag for tag in seen if tag not in watch.digests][:MAX_NEW_TAGS]


def _live(watch: Watch) -> bool:
    """Announced, and not held for an admin's approval: nothing reaches its source before."""
    return watch.reply_ref is not None and not watch.held


class RegistryUpstream:
    """The registry engine's HEAD and tag list, shared with copies (one client, one backoff
    and pull-limit state per host); built on first use, like the engine itself."""

    def __init__(self, engines: EngineChooser) -> None:
        self._engines = engines

    def _engine(self) -> RegistryEngine:
        from mirror.engines.registry.engine import RegistryEngine

        engine = self._engines.get("registry")
        if not isinstance(engine, RegistryEngine):
            raise EngineUnavailable(
                Text("Watches need the registry engine, which is not set up here.")
            )
        return engine

    async def head_digest(self, ref: ImageRef) -> str | None:
        return await self._engine().head_digest(ref)

    async def tags(self, ref: ImageRef) -> list[str]:
        return await self._engine().tags(ref)
