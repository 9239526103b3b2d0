"""The front side of the copy queue: queue a copy (or follow the identical one already
queued or running) and hear how it goes, as if this process copied it itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from mirror.engines.base import CopyRequest, ProgressSink
from mirror.errors import MirrorError, too_large
from mirror.models import ItemStatus, Outcome, platform_text
from mirror.progress import ProgressEvent
from mirror.queue.app import CHANNEL, COPY_TASK, DOWN, POLL_SECONDS, QUEUE_DOWN, Queue, listen
from mirror.queue.codec import events_of, notice_of, outcome_of, task_args
from mirror.text import Text

log = logging.getLogger(__name__)

Measure = Callable[[CopyRequest], Awaitable[int | None]]
LOST = Text("The worker running this copy stopped without an answer; ask again to retry it.")


@dataclass
class _Waiter:
    sinks: list[ProgressSink] = field(default_factory=list)
    landed: asyncio.Event = field(default_factory=asyncio.Event)


class QueueCopier:
    """The front's :class:`Copier`: queues a copy for the workers and follows it."""

    def __init__(self, queue: Queue, measure: Measure | None = None) -> None:
        self._queue = queue
        self._app = queue.app
        self._measure = measure
        self._waiting: dict[int, _Waiter] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False

    async def copy(self, request: CopyRequest, emit: ProgressSink) -> Outcome:
        refused = await self._over_limit(request)
        if refused is not None:
            return Outcome(ItemStatus.FAILED, error=str(refused))
        try:
            job_id = await self._enqueue(request)
        except DOWN as exc:
            log.warning("copy to %s not queued: %s", request.target, exc)
            return Outcome(ItemStatus.FAILED, error=QUEUE_DOWN)
        waiter = self._waiting.setdefault(job_id, _Waiter())
        waiter.sinks.append(emit)
        try:
            for event in await self._progress_so_far(job_id):
                emit(event)
            while True:
                waiter.landed.clear()
                try:
                    outcome = await self._finished(job_id)
                except DOWN as exc:  # the copy goes on; ask again at the next poll
                    log.warning("copy job %s: outcome not readable now (%s)", job_id, exc)
                    outcome = None
                if outcome is not None:
                    return outcome
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await waiter.landed.wait()
        except asyncio.CancelledError:
            if not self._closing and waiter.sinks == [emit]:  # /cancel, and nobody else here
                await asyncio.shield(self._abort(job_id))
            raise
        finally:
            waiter.sinks.remove(emit)
            if not waiter.sinks:
                self._waiting.pop(job_id, None)

    async def _over_limit(self, request: CopyRequest) -> MirrorError | None:
        """MIRROR_MAX_IMAGE_BYTES before the copy is queued, from the manifests, so a refusal
        needs no worker; when the size cannot be told here, the worker checks it again before
        any blob moves."""
        if request.max_bytes is None or self._measure is None:
            return None
        try:
            size = await self._measure(request)
        except MirrorError as exc:
            log.info("copy to %s: size not known before queueing (%s)", request.target, exc)
            return None
        if size is not None and size > request.max_bytes:
            return too_large(request.source, size, request.max_bytes)
        return None

    async def _progress_so_far(self, job_id: int) -> list[ProgressEvent]:
        """Where a copy already is, for a front that joins it running (its notifications
        carry only what changes from now on)."""
        try:
            row = await self._app.connector.execute_query_one_async(
                "SELECT COALESCE((SELECT events FROM copy_progress WHERE job_id = %(job)s), "
                "'[]') AS events",
                job=job_id,
            )
        except DOWN as exc:
            log.warning("copy job %s: progress so far not readable (%s)", job_id, exc)
            return []
        return events_of(row["events"])

    async def _abort(self, job_id: int) -> None:
        """Take a copy nobody wants off the queue, or stop the worker running it (procrastinate
        cancels its task). Another front following the same copy then hears :data:`LOST`."""
        try:
            await self._app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        except DOWN as exc:
            log.warning("copy job %s: not cancelled (%s)", job_id, exc)

    async def _enqueue(self, request: CopyRequest) -> int:
        """The queued or running identical copy's job, or a new one.

        procrastinate's queueing lock only covers jobs still waiting ('todo'): between our look
        and our defer, a worker may take the identical job ('doing') and the defer would then
        queue a second copy. So every front looks and defers under one PostgreSQL advisory lock
        per copy, in one transaction on a connection borrowed for its length: the new job and
        the lock's release commit together."""
        queueing_lock = f"{request.source}|{request.target}|{platform_text(request.platform)}"
        async with self._queue.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (queueing_lock,))
            cursor = await conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM procrastinate_jobs WHERE task_name = %s "
                "AND queueing_lock = %s AND status IN ('todo', 'doing')",
                (COPY_TASK, queueing_lock),
            )
            row = await cursor.fetchone()
            if row and row[0]:
                log.info("copy to %s joins queued job %s", request.target, row[0])
                return int(row[0])
            job_id = await self._app.configure_task(
                COPY_TASK, lock=str(request.target), queueing_lock=queueing_lock, connection=conn
            ).defer_async(**task_args(request))
        log.info("copy to %s queued as job %s", request.target, job_id)
        return job_id

    async def _finished(self, job_id: int) -> Outcome | None:
        row = await self._app.connector.execute_query_one_async(
            "SELECT j.status, o.outcome FROM procrastinate_jobs j "
            "LEFT JOIN copy_outcomes o ON o.job_id = j.id WHERE j.id = %(job)s",
            job=job_id,
        )
        if row["outcome"] is not None:
            return outcome_of(row["outcome"])
        if row["status"] in ("todo", "doing"):
            return None
        return Outcome(ItemStatus.FAILED, error=LOST)

    def _heard(self, payload: str) -> None:
        try:
            notice = notice_of(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("copy queue: unreadable notification %r", payload)
            return
        waiter = self._waiting.get(notice.job)
        if waiter is None:
            return
        for event in notice.events:
            for sink in list(waiter.sinks):
                sink(event)
        if notice.done:
            waiter.landed.set()

    def _connected(self) -> None:
        """Listening (again): every waiter looks at its outcome, which may have landed unheard."""
        self._listening.set()
        for waiter in self._waiting.values():
            waiter.landed.set()

    async def start(self) -> None:
        self._listener = asyncio.create_task(
            listen(self._queue.pool, CHANNEL, connected=self._connected, heard=self._heard),
            name="copy-queue-listener",
        )
        async with asyncio.timeout(POLL_SECONDS):
            await self._listening.wait()

    async def aclose(self) -> None:
        """Stop following copies; the queue keeps them for the next start (not cancelled)."""
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener


@contextlib.asynccontextmanager
async def open_front(queue: Queue, *, measure: Measure | None = None) -> AsyncIterator[QueueCopier]:
    """The front's copier on ``queue``, listening until the context ends; ``measure`` tells an
    image's size for the size limit before it is queued."""
    copier = QueueCopier(queue, measure)
    await copier.start()
    try:
        yield copier
    finally:
        await copier.aclose()
