"""Copies as procrastinate tasks on a PostgreSQL ``MIRROR_DB`` (issue 16).

The chat front never copies then: its :class:`QueueCopier` queues each copy (or joins the
identical one already queued or running) and waits for its outcome, while any number of
``mirror-bot worker`` processes, on any machine that reaches PostgreSQL, the sources and the
target, run them with their own engines (:func:`work`).

- **Coalescing**: a copy's ``queueing_lock`` is its source, target and platform, so one such
  copy waits at a time; its ``lock`` is its target, so two copies never write one target at
  once. A front that finds the identical copy queued or running follows that one.
- **Progress**: a worker sends what its engine reports, at most every
  :data:`PROGRESS_EVERY` seconds (stages and finished blobs always), with PostgreSQL
  ``NOTIFY``, and keeps the state so far in ``copy_progress``; the front ``LISTEN``\\ s and
  feeds its live messages as if it copied itself, starting from that state when it joins a
  copy already running.
- **Outcomes** are rows of ``copy_outcomes`` (a store migration), written and announced in
  one statement; the front also reads them every :data:`POLL_SECONDS`, so a notification
  lost to a reconnect costs seconds, and a front restarted mid-copy finds the copy by its
  lock and still gets its outcome.
- **Faults**: workers beat a heartbeat; every :data:`STALLED_SCAN_SECONDS` each of them looks
  for copies whose worker stopped beating (killed, machine gone) and puts them back in the
  queue, where another worker finishes them (procrastinate's stalled-job retry).

This module knows no chat: it moves :class:`CopyRequest`\\ s and :class:`Outcome`\\ s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
import tenacity
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.copier import Copier
from mirror.engine import CopyRequest, ProgressSink
from mirror.errors import MirrorError, too_large
from mirror.models import ItemStatus, Outcome, platform_text
from mirror.platform import parse_platform
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import parse_reference
from mirror.store import StoreError

log = logging.getLogger(__name__)

Measure = Callable[[CopyRequest], Awaitable[int | None]]

COPY_TASK = "mirror.copy"
QUEUE = "copies"
CHANNEL = "mirror_copies"
PROGRESS_EVERY = 0.5
POLL_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0
STALLED_AFTER_SECONDS = 30.0
STALLED_SCAN_SECONDS = 5.0
_SCHEMA_LOCK = 0x717565756531  # one process applies procrastinate's schema at a time
_EVENTS_PER_NOTIFY = 40  # a NOTIFY payload must stay under 8000 bytes
_DOWN = (psycopg.Error, ConnectorException)  # procrastinate wraps psycopg's errors in its own

LOST = "The worker running this copy stopped without an answer; ask again to retry it."
QUEUE_DOWN = "The copy queue (PostgreSQL) is unavailable right now; try again shortly."
OUTCOME_WRITE_SECONDS = 120.0
"""How long a worker keeps trying to write an outcome while PostgreSQL is away."""


# -- the procrastinate app ---------------------------------------------------------------------


def make_app(dsn: str) -> procrastinate.App:
    """The queue's app and its one task, the copy."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=4)
    )

    @app.task(name=COPY_TASK, queue=QUEUE, pass_context=True)
    async def copy(
        context: procrastinate.JobContext,
        source: str,
        target: str,
        platform: str,
        max_bytes: int | None,
    ) -> None:
        worker: QueueWorker = context.additional_context["worker"]
        assert context.job.id is not None
        request = CopyRequest(
            parse_reference(source), parse_reference(target), parse_platform(platform), max_bytes
        )
        await worker.run(context.job.id, request)

    return app


async def prepare(dsn: str) -> None:
    """Create procrastinate's tables once per database (front and workers all call this)."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cursor.fetchone()
        if not (row and row[0]):
            schema = procrastinate.App(connector=procrastinate.PsycopgConnector())
            await conn.execute(schema.schema_manager.get_schema().encode())


@dataclass(frozen=True)
class Census:
    workers: int
    """Workers that beat within the stalled-after time."""
    waiting: int
    running: int


async def census(dsn: str, *, stalled_after: float = STALLED_AFTER_SECONDS) -> Census:
    """Who works and what waits (``mirror-bot check``): a front without workers would queue
    copies that nobody runs."""
    try:
        return await _census(dsn, stalled_after)
    except psycopg.Error as exc:
        raise StoreError(QUEUE_DOWN) from exc


async def _census(dsn: str, stalled_after: float) -> Census:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5)
    async with conn:
        cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cursor.fetchone()
        if not (row and row[0]):
            return Census(0, 0, 0)
        cursor = await conn.execute(
            "SELECT (SELECT COUNT(*) FROM procrastinate_workers WHERE last_heartbeat > "
            "NOW() - make_interval(secs => %s)), "
            "COUNT(*) FILTER (WHERE status = 'todo'), COUNT(*) FILTER (WHERE status = 'doing') "
            "FROM procrastinate_jobs WHERE task_name = %s",
            (stalled_after, COPY_TASK),
        )
        workers, waiting, running = await cursor.fetchone() or (0, 0, 0)
    return Census(int(workers), int(waiting), int(running))


# -- wire format -------------------------------------------------------------------------------


def _event_json(event: ProgressEvent) -> list[Any]:
    if isinstance(event, StageChanged):
        return ["stage", event.stage.value]
    if isinstance(event, BlobProgress):
        return ["blob", event.blob, event.done, event.total]
    return ["done", event.blob, event.size]


def _event_of(data: list[Any]) -> ProgressEvent:
    kind, *rest = data
    if kind == "stage":
        return StageChanged(Stage(rest[0]))
    if kind == "blob":
        return BlobProgress(rest[0], int(rest[1]), rest[2])
    return BlobDone(rest[0], rest[1])


def outcome_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "status": outcome.status.value,
            "engine": outcome.engine,
            "source_digest": outcome.source_digest,
            "target_digest": outcome.target_digest,
            "bytes": outcome.bytes,
            "seconds": outcome.seconds,
            "error": outcome.error,
            "referrers": [[r.digest, r.artifact_type, r.kind.value] for r in outcome.referrers],
            "artifact": outcome.artifact.value if outcome.artifact else None,
            "suggestions": list(outcome.suggestions),
            "not_before": outcome.not_before,
        }
    )


def outcome_of(text: str) -> Outcome:
    data = json.loads(text)
    return Outcome(
        ItemStatus(data["status"]),
        engine=data["engine"],
        source_digest=data["source_digest"],
        target_digest=data["target_digest"],
        bytes=data["bytes"],
        seconds=data["seconds"],
        error=data["error"],
        referrers=tuple(Referrer(d, t, ReferrerKind(k)) for d, t, k in data["referrers"]),
        artifact=ArtifactKind(data["artifact"]) if data["artifact"] else None,
        suggestions=tuple(data["suggestions"]),
        not_before=data.get("not_before"),
    )


# -- the worker side ---------------------------------------------------------------------------


class _ProgressSender:
    """Batches a copy's progress into a NOTIFY every :data:`PROGRESS_EVERY` seconds: each
    blob's latest count since the last stage change (counts are cumulative), and every stage
    change and finished blob in order. The whole state so far (the stage, each blob's latest
    event) is written to ``copy_progress`` as well, for a front that joins later (restarted,
    or another one asking for the same copy) to start from."""

    def __init__(self, connector: procrastinate.PsycopgConnector, job_id: int) -> None:
        self._connector = connector
        self._job_id = job_id
        self._pending: list[ProgressEvent] = []
        self._latest: dict[str, int] = {}
        self._state: dict[str, ProgressEvent] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._send_loop())

    def emit(self, event: ProgressEvent) -> None:
        if isinstance(event, StageChanged):
            self._state = {"": event}
        elif not isinstance(self._state.get(event.blob), BlobDone):
            self._state[event.blob] = event
        if isinstance(event, BlobProgress) and event.blob in self._latest:
            self._pending[self._latest[event.blob]] = event
            return
        if isinstance(event, StageChanged):
            self._latest.clear()
        elif isinstance(event, BlobProgress):
            self._latest[event.blob] = len(self._pending)
        self._pending.append(event)
        self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            await self.flush()
            await asyncio.sleep(PROGRESS_EVERY)

    async def flush(self) -> None:
        events, self._pending = self._pending, []
        self._latest.clear()
        self._wake.clear()
        if not events:
            return
        try:
            await self._connector.execute_query_async(
                "INSERT INTO copy_progress (job_id, events, updated) VALUES "
                "(%(job)s, %(events)s, %(now)s) ON CONFLICT (job_id) DO UPDATE SET "
                "events = excluded.events, updated = excluded.updated",
                job=self._job_id,
                events=json.dumps([_event_json(e) for e in self._state.values()]),
                now=time.time(),
            )
            for start in range(0, len(events), _EVENTS_PER_NOTIFY):
                chunk = events[start : start + _EVENTS_PER_NOTIFY]
                await self._connector.execute_query_async(
                    "SELECT pg_notify(%(channel)s, %(payload)s)",
                    channel=CHANNEL,
                    payload=json.dumps(
                        {"job": self._job_id, "events": [_event_json(e) for e in chunk]}
                    ),
                )
        except _DOWN as exc:  # progress is a courtesy; the outcome is not
            log.warning("copy job %s: progress not sent (%s)", self._job_id, exc)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.flush()


class QueueWorker:
    """Runs the copies this worker takes from the queue with its own copier."""

    def __init__(self, app: procrastinate.App, copier: Copier) -> None:
        self._app = app
        self._copier = copier

    async def run(self, job_id: int, request: CopyRequest) -> None:
        connector = self._app.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        sender = _ProgressSender(connector, job_id)
        try:
            outcome = await self._copier.copy(request, sender.emit)
        finally:
            await sender.aclose()
        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_delay(OUTCOME_WRITE_SECONDS),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=tenacity.retry_if_exception_type(_DOWN),
            reraise=True,
        ):
            with attempt:
                await self._save(connector, job_id, outcome)

    async def _save(
        self, connector: procrastinate.PsycopgConnector, job_id: int, outcome: Outcome
    ) -> None:
        """Write the outcome and announce it in one statement: heard means stored (and the
        copy's progress is no one's concern any more)."""
        await connector.execute_query_async(
            "WITH done AS (DELETE FROM copy_progress WHERE job_id = %(job)s), "
            "saved AS (INSERT INTO copy_outcomes (job_id, outcome, created) "
            "VALUES (%(job)s, %(outcome)s, %(now)s) ON CONFLICT (job_id) DO UPDATE SET "
            "outcome = excluded.outcome, created = excluded.created RETURNING job_id) "
            "SELECT pg_notify(%(channel)s, json_build_object('job', job_id, 'done', true)::text) "
            "FROM saved",
            job=job_id,
            outcome=outcome_json(outcome),
            now=time.time(),
            channel=CHANNEL,
        )


async def work(
    dsn: str,
    copier: Copier,
    *,
    concurrency: int,
    name: str,
    heartbeat: float = HEARTBEAT_SECONDS,
    stalled_after: float = STALLED_AFTER_SECONDS,
) -> None:
    """Take copies from the queue until SIGINT/SIGTERM (running copies finish first).

    Copies take exactly ``concurrency`` slots, so a busy worker leaves the next copy to an
    idle one; the stalled-copy scan runs beside them.
    """
    await prepare(dsn)
    app = make_app(dsn)
    async with app.open_async():
        scan = asyncio.create_task(_requeue_stalled(app, stalled_after))
        try:
            await app.run_worker_async(
                queues=[QUEUE],
                concurrency=concurrency,
                name=name,
                additional_context={"worker": QueueWorker(app, copier)},
                update_heartbeat_interval=heartbeat,
                stalled_worker_timeout=stalled_after,
            )
        finally:
            scan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scan


async def _requeue_stalled(app: procrastinate.App, stalled_after: float) -> None:
    """Every :data:`STALLED_SCAN_SECONDS`, put back in the queue the copies of workers that
    stopped beating (procrastinate's stalled jobs). Every worker scans; a job is requeued
    once, by whichever gets there first (the others' attempt finds it no longer running)."""
    while True:
        await asyncio.sleep(STALLED_SCAN_SECONDS)
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                task_name=COPY_TASK, seconds_since_heartbeat=stalled_after
            )
            for job in stalled:
                with contextlib.suppress(ConnectorException):  # another worker was first
                    await app.job_manager.retry_job(job)
                    log.warning("copy job %s: its worker stopped beating; queued again", job.id)
        except _DOWN as exc:
            log.warning("stalled-copy scan skipped: %s", exc)


# -- the front side ----------------------------------------------------------------------------


@dataclass
class _Waiter:
    sinks: list[ProgressSink] = field(default_factory=list)
    landed: asyncio.Event = field(default_factory=asyncio.Event)


class QueueCopier:
    """The front's :class:`Copier`: queues a copy for the workers and follows it."""

    def __init__(self, app: procrastinate.App, dsn: str, measure: Measure | None = None) -> None:
        self._app = app
        self._dsn = dsn
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
        except (*_DOWN, AlreadyEnqueued) as exc:
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
                except _DOWN as exc:  # the copy goes on; ask again at the next poll
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
        except _DOWN as exc:
            log.warning("copy job %s: progress so far not readable (%s)", job_id, exc)
            return []
        return [_event_of(raw) for raw in json.loads(row["events"])]

    async def _abort(self, job_id: int) -> None:
        """Take a copy nobody wants off the queue, or stop the worker running it (procrastinate
        cancels its task). Another front following the same copy then hears :data:`LOST`."""
        try:
            await self._app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        except _DOWN as exc:
            log.warning("copy job %s: not cancelled (%s)", job_id, exc)

    async def _enqueue(self, request: CopyRequest) -> int:
        """The queued or running identical copy's job, or a new one. Another front may queue
        the same copy between the look and the defer: then it is followed instead."""
        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(AlreadyEnqueued),
            reraise=True,
        ):
            with attempt:
                return await self._join_or_defer(request)
        raise AssertionError("tenacity returns or raises")

    async def _join_or_defer(self, request: CopyRequest) -> int:
        platform = platform_text(request.platform)
        queueing_lock = f"{request.source}|{request.target}|{platform}"
        row = await self._app.connector.execute_query_one_async(
            "SELECT COALESCE(MAX(id), 0) AS id FROM procrastinate_jobs WHERE task_name = "
            "%(task)s AND queueing_lock = %(lock)s AND status IN ('todo', 'doing')",
            task=COPY_TASK,
            lock=queueing_lock,
        )
        if row["id"]:
            log.info("copy to %s joins queued job %s", request.target, row["id"])
            return int(row["id"])
        job_id = await self._app.configure_task(
            COPY_TASK, lock=str(request.target), queueing_lock=queueing_lock
        ).defer_async(
            source=str(request.source),
            target=str(request.target),
            platform=platform,
            max_bytes=request.max_bytes,
        )
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
        data = json.loads(payload)
        waiter = self._waiting.get(int(data["job"]))
        if waiter is None:
            return
        for raw in data.get("events", ()):
            event = _event_of(raw)
            for sink in list(waiter.sinks):
                sink(event)
        if data.get("done"):
            waiter.landed.set()

    async def _listen(self) -> None:
        """LISTEN for ever; a lost connection comes back with backoff, and every waiter
        then looks at its outcome again (what was said meanwhile was not heard)."""
        async for attempt in tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=tenacity.retry_if_exception_type(psycopg.Error),
            before_sleep=lambda state: log.warning(
                "copy queue: listening again after %s", state.outcome and state.outcome.exception()
            ),
        ):
            with attempt:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    for waiter in self._waiting.values():
                        waiter.landed.set()
                    async for notice in conn.notifies():
                        try:
                            self._heard(notice.payload)
                        except (ValueError, KeyError, TypeError):
                            log.warning("copy queue: unreadable notification %r", notice.payload)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="copy-queue-listener")
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
async def open_front(dsn: str, *, measure: Measure | None = None) -> AsyncIterator[QueueCopier]:
    """The front's copier for the queue on ``dsn``, listening until the context ends;
    ``measure`` tells an image's size for the size limit before it is queued."""
    await prepare(dsn)
    app = make_app(dsn)
    async with app.open_async():
        copier = QueueCopier(app, dsn, measure)
        await copier.start()
        try:
            yield copier
        finally:
            await copier.aclose()
