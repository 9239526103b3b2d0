"""One copy from request to outcome with this process's engines (issue 16 splits where it
runs: in the bot itself, or in a ``mirror-bot worker`` that took it from the queue).

Whatever happens, :meth:`LocalCopier.copy` answers with an :class:`Outcome`: "already
mirrored" when the target still holds this very image, the size limit before any blob
moves, whole-copy retries only for what an engine marks transient, and a miss answered
with the nearest real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Protocol

from mirror.engines.base import CopyRequest, Engine, ProgressSink
from mirror.engines.chooser import EngineChooser
from mirror.errors import (
    CopyFailed,
    MirrorError,
    PlatformMissing,
    PullLimitReached,
    SourceMissing,
    too_large,
)
from mirror.models import Item, ItemStatus, Outcome, platform_text
from mirror.progress import Stage, StageChanged
from mirror.retrying import retried
from mirror.store import Store
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.lookup import Advice

log = logging.getLogger(__name__)

DAEMON_COPIES = 2
"""Copies through a daemon (an engine that is not exact) at once, whatever the ceiling: the
daemon unpacks and packs every layer on the machine's cores, so more would only share them
(issue 24 raised ``MIRROR_CONCURRENCY``'s default for the registry engine's small copies)."""

INTERNAL_ERROR = Text("An internal error stopped this copy; the bot's log has the details.")


class Copier(Protocol):
    """Runs one copy; ``emit`` hears its progress. Every failure is a FAILED outcome.

    A copy cancelled while the copier is open was not wanted any more (``/cancel``); once
    :meth:`aclose` began, a cancelled copy is the process stopping, and whatever runs it
    elsewhere goes on, for the next start to follow.
    """

    async def copy(self, request: CopyRequest, emit: ProgressSink) -> Outcome: ...

    async def aclose(self) -> None: ...


class Advisor(Protocol):
    """Turns a miss into the nearest real thing (:class:`mirror.lookup.Lookups`)."""

    async def advise(self, error: MirrorError, request: CopyRequest) -> Advice | None: ...


def _is_transient(exc: BaseException) -> bool:
    """Only what an engine marks as worth redoing whole (the docker daemon's faults): the
    registry engine retries its own faults and never marks them, so retries do not multiply."""
    return isinstance(exc, CopyFailed) and exc.transient


class LocalCopier:
    def __init__(
        self,
        store: Store,
        engines: EngineChooser,
        *,
        concurrency: int = 2,
        attempts: int = 3,
        retry_wait: float = 1.0,
        advisor: Advisor | None = None,
        wait_for_limits: bool = True,
    ) -> None:
        """``wait_for_limits``: a pull limit is a WAITING outcome saying when it lifts (the
        bot's job waits and copies again); False makes it FAILED with the same time (scripts)."""
        self._wait_for_limits = wait_for_limits
        self.store = store
        self.engines = engines
        self.advisor = advisor
        self._slots = asyncio.Semaphore(concurrency)
        self._daemon_slots = asyncio.Semaphore(min(concurrency, DAEMON_COPIES))
        self._attempts = attempts
        self._retry_wait = retry_wait

    async def aclose(self) -> None:
        """Nothing runs elsewhere: the copies this process runs stop with it."""

    async def copy(self, request: CopyRequest, emit: ProgressSink) -> Outcome:
        async with self._slots:
            started = time.monotonic()
            emit(StageChanged(Stage.RESOLVING))
            engine: Engine | None = None
            try:
                engine = await self.engines.choose(request)
                log.info(
                    "copy %s -> %s (%s) with the %s engine",
                    request.source,
                    request.target,
                    platform_text(request.platform),
                    engine.name,
                )
                daemon = not self.engines.is_exact(engine.name)
                async with self._daemon_slots if daemon else contextlib.nullcontext():
                    result = await self._copy(engine, request, emit)
                return dataclasses.replace(result, seconds=time.monotonic() - started)
            except PullLimitReached as exc:
                waits = self._wait_for_limits
                return Outcome(
                    ItemStatus.WAITING if waits else ItemStatus.FAILED,
                    engine=engine.name if engine else None,
                    seconds=time.monotonic() - started,
                    error=exc.waiting() if waits else text_of(exc),
                    not_before=exc.lifts_at.timestamp(),
                )
            except MirrorError as exc:
                failure = exc  # advised below, once the slot is free for the next copy
                engine_name = engine.name if engine else None
                seconds = time.monotonic() - started
            except Exception:
                log.exception(
                    "copy of %s to %s failed unexpectedly", request.source, request.target
                )
                return Outcome(
                    ItemStatus.FAILED,
                    engine=engine.name if engine else None,
                    seconds=time.monotonic() - started,
                    error=INTERNAL_ERROR,
                )
        advice = await self._advise(failure, request)
        return Outcome(
            ItemStatus.FAILED,
            engine=engine_name,
            seconds=seconds,
            error=advice.sentence if advice else text_of(failure),
            suggestions=advice.suggestions if advice else (),
        )

    async def _copy(self, engine: Engine, request: CopyRequest, emit: ProgressSink) -> Outcome:
        """The engine's copy, unless the target still holds this very image; the size limit
        first; whole-copy retries only for what the engine marks transient."""
        previous = await already_mirrored(self.store, engine, request)
        if previous is not None:
            return Outcome(
                ItemStatus.ALREADY_MIRRORED,
                engine=previous.engine,
                source_digest=previous.source_digest,
                target_digest=previous.target_digest,
                bytes=previous.bytes,
                referrers=previous.referrers,
                artifact=previous.artifact,
            )
        await self._check_size(engine, request)
        return await retried(
            lambda: engine.copy(request, emit),
            attempts=self._attempts,
            retry_if=_is_transient,
            multiplier=self._retry_wait,
            max_wait=30,
        )

    async def _advise(self, error: MirrorError, request: CopyRequest) -> Advice | None:
        """A miss answered with the nearest real thing; never a reason for a copy to fail
        differently (the advisor keeps its own failures to itself)."""
        if self.advisor is None or not isinstance(error, SourceMissing | PlatformMissing):
            return None
        try:
            return await self.advisor.advise(error, request)
        except Exception:  # a bug in the lookups must not cost the miss its own sentence
            log.exception("could not advise on %s", request.source)
            return None

    async def _check_size(self, engine: Engine, request: CopyRequest) -> None:
        """MIRROR_MAX_IMAGE_BYTES, measured by the engine that copies, before any blob moves
        when it can tell (else the engine stops its copy once it is over)."""
        if request.max_bytes is None:
            return
        size = await engine.measure(request)
        if size is not None and size > request.max_bytes:
            raise too_large(request.source, size, request.max_bytes)


async def already_mirrored(store: Store, engine: Engine, request: CopyRequest) -> Item | None:
    """The earlier copy still at the target, when it was of the source's current digest.

    Only asks the registries when the store knows an earlier copy, so a first copy costs
    no extra round trip before the transfer.
    """
    previous = await store.last_success(str(request.target))
    if (
        previous is None
        or previous.platform != request.platform
        or previous.target_digest is None
        or previous.source_digest is None
    ):
        return None
    if await engine.source_digest(request) != previous.source_digest:
        return None
    current = await engine.target_digest(request.target)
    return previous if current == previous.target_digest else None
