"""The worker side of the copy queue: run copies taken from it with this process's copier,
tell the fronts how they go, and requeue the copies of workers that stopped beating."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import procrastinate
import tenacity
from procrastinate.exceptions import ConnectorException

from mirror.copier import Copier
from mirror.engines.base import CopyRequest
from mirror.errors import MirrorError
from mirror.models import Outcome
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, StageChanged
from mirror.queue.app import (
    CHANNEL,
    COPY_TASK,
    DOWN,
    HEARTBEAT_SECONDS,
    PROGRESS_EVERY,
    QUEUE,
    STALLED_AFTER_SECONDS,
    STALLED_SCAN_SECONDS,
    Queue,
)
from mirror.queue.codec import events_json, outcome_json, progress_notice
from mirror.queue.watching import WATCH_QUEUE, add_watch_check, hand_over
from mirror.store import Store
from mirror.watches import Upstream, Watcher

log = logging.getLogger(__name__)

EVENTS_PER_NOTIFY = 40  # a NOTIFY payload must stay under 8000 bytes
OUTCOME_WRITE_SECONDS = 120.0
"""How long a worker keeps trying to write an outcome while PostgreSQL is away."""


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
                events=events_json(self._state.values()),
                now=time.time(),
            )
            for start in range(0, len(events), EVENTS_PER_NOTIFY):
                chunk = events[start : start + EVENTS_PER_NOTIFY]
                await self._connector.execute_query_async(
                    "SELECT pg_notify(%(channel)s, %(payload)s)",
                    channel=CHANNEL,
                    payload=progress_notice(self._job_id, chunk),
                )
        except DOWN as exc:  # progress is a courtesy; the outcome is not
            log.warning("copy job %s: progress not sent (%s)", self._job_id, exc)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.flush()


class QueueWorker:
    """Runs the copies this worker takes from the queue with its own copier."""

    def __init__(self, connector: procrastinate.PsycopgConnector, copier: Copier) -> None:
        self._connector = connector
        self._copier = copier

    async def run(self, job_id: int, request: CopyRequest) -> None:
        sender = _ProgressSender(self._connector, job_id)
        try:
            outcome = await self._copier.copy(request, sender.emit)
        finally:
            await sender.aclose()
        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_delay(OUTCOME_WRITE_SECONDS),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=tenacity.retry_if_exception_type(DOWN),
            reraise=True,
        ):
            with attempt:
                await self._save(job_id, outcome)

    async def _save(self, job_id: int, outcome: Outcome) -> None:
        """Write the outcome and announce it in one statement: heard means stored (and the
        copy's progress is no one's concern any more)."""
        await self._connector.execute_query_async(
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
    queue: Queue,
    copier: Copier,
    *,
    concurrency: int,
    name: str,
    store: Store,
    upstream: Upstream,
    watch_interval: float,
    heartbeat: float = HEARTBEAT_SECONDS,
    stalled_after: float = STALLED_AFTER_SECONDS,
) -> None:
    """Take copies from the queue until SIGINT/SIGTERM (running copies finish first), and
    check the watches on the periodic tick (:mod:`mirror.queue.watching`).

    Copies get ``concurrency`` slots and the watch pass one more, so checks are not held up
    behind long copies (the copier itself runs at most ``concurrency`` copies at once); the
    stalled-copy scan runs beside them.
    """
    add_watch_check(queue.app, watch_interval)
    watcher = Watcher(store, upstream, hand_over(queue.connector), interval=watch_interval)
    options: procrastinate.app.WorkerOptions = {
        "queues": [QUEUE, WATCH_QUEUE],
        "concurrency": concurrency + 1,
        "name": name,
        "additional_context": {"worker": QueueWorker(queue.connector, copier), "watcher": watcher},
        "update_heartbeat_interval": heartbeat,
        "stalled_worker_timeout": stalled_after,
        "install_signal_handlers": False,
    }
    scan = asyncio.create_task(_requeue_stalled(queue.app, stalled_after))
    try:
        await _run_until_signalled(queue.app, options)
    finally:
        scan.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scan


class _WorkerStopped(MirrorError):
    """procrastinate's worker ended by itself: one of its side tasks (the job listener, the
    periodic deferrer) failed, as when PostgreSQL restarts."""


async def _run_until_signalled(
    app: procrastinate.App, options: procrastinate.app.WorkerOptions
) -> None:
    """Run procrastinate's worker until SIGINT/SIGTERM, and again (with backoff) whenever it
    stops by itself: it stops when its listener cannot reconnect at once, and a worker that
    quietly went away would leave its copies and watches to nobody."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async for attempt in tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=tenacity.retry_if_exception_type((_WorkerStopped, *DOWN)),
            before_sleep=lambda state: log.warning(
                "copy queue: the worker stopped (%s); starting it again",
                state.outcome and state.outcome.exception(),
            ),
        ):
            with attempt:
                running = asyncio.create_task(app.run_worker_async(**options))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():  # running copies finish first (procrastinate's cancel)
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    return
                stopping.cancel()
                running.result()  # a failure to start raises here (DOWN: try again)
                raise _WorkerStopped("its listener or periodic deferrer failed")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


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
        except DOWN as exc:
            log.warning("stalled-copy scan skipped: %s", exc)
