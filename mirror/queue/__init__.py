"""Copies as procrastinate tasks on a PostgreSQL ``MIRROR_DB`` (issue 16).

The chat front never copies then: its ``QueueCopier`` (:mod:`mirror.queue.front`) queues each
copy (or joins the identical one already queued or running) and waits for its outcome, while
any number of ``mirror-bot worker`` processes, on any machine that reaches PostgreSQL, the
sources and the target, run them with their own engines (:mod:`mirror.queue.worker`).

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

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import procrastinate
import psycopg
import tenacity
from procrastinate.exceptions import ConnectorException

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.engines.base import CopyRequest
from mirror.models import ItemStatus, Outcome
from mirror.platform import parse_platform
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import parse_reference
from mirror.store import StoreError
from mirror.text import Text

if TYPE_CHECKING:
    from mirror.queue.worker import QueueWorker

COPY_TASK = "mirror.copy"
QUEUE = "copies"
CHANNEL = "mirror_copies"
PROGRESS_EVERY = 0.5
POLL_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0
STALLED_AFTER_SECONDS = 30.0
STALLED_SCAN_SECONDS = 5.0
_SCHEMA_LOCK = 0x717565756531  # one process applies procrastinate's schema at a time
DOWN = (psycopg.Error, ConnectorException)  # procrastinate wraps psycopg's errors in its own

QUEUE_DOWN = Text("The copy queue (PostgreSQL) is unavailable right now; try again shortly.")


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


def event_json(event: ProgressEvent) -> list[Any]:
    if isinstance(event, StageChanged):
        return ["stage", event.stage.value]
    if isinstance(event, BlobProgress):
        return ["blob", event.blob, event.done, event.total]
    return ["done", event.blob, event.size]


def event_of(data: list[Any]) -> ProgressEvent:
    kind, *rest = data
    if kind == "stage":
        return StageChanged(Stage(rest[0]))
    if kind == "blob":
        return BlobProgress(rest[0], int(rest[1]), rest[2])
    return BlobDone(rest[0], rest[1])


def _sentence_json(value: Any) -> Any:
    """A :class:`Text` as its template and parameters (so the front answers in the asker's
    language), with its English beside it; anything else as JSON has it."""
    if isinstance(value, Text):
        params = {key: _sentence_json(param) for key, param in value.params.items()}
        return {"text": str(value), "msgid": value.msgid, "params": params}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _sentence_of(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    try:
        rebuilt = Text(data["msgid"], **{k: _sentence_of(v) for k, v in data["params"].items()})
    except (KeyError, ValueError, TypeError, IndexError):
        return data["text"]
    return rebuilt if rebuilt == data["text"] else data["text"]  # a parameter lost its type


def outcome_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "status": outcome.status.value,
            "engine": outcome.engine,
            "source_digest": outcome.source_digest,
            "target_digest": outcome.target_digest,
            "bytes": outcome.bytes,
            "seconds": outcome.seconds,
            "error": _sentence_json(outcome.error),
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
        error=_sentence_of(data["error"]),
        referrers=tuple(Referrer(d, t, ReferrerKind(k)) for d, t, k in data["referrers"]),
        artifact=ArtifactKind(data["artifact"]) if data["artifact"] else None,
        suggestions=tuple(data["suggestions"]),
        not_before=data.get("not_before"),
    )


async def listen(
    dsn: str, channel: str, *, connected: Callable[[], None], heard: Callable[[str], None]
) -> None:
    """LISTEN on ``channel`` for ever. A lost connection comes back with backoff, and
    ``connected`` runs after every (re)connect: what was said meanwhile was not heard, so the
    listener looks at the stored state again."""
    log = logging.getLogger(__name__)
    async for attempt in tenacity.AsyncRetrying(
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        retry=tenacity.retry_if_exception_type(psycopg.Error),
        before_sleep=lambda state: log.warning(
            "%s: listening again after %s", channel, state.outcome and state.outcome.exception()
        ),
    ):
        with attempt:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {channel}")
                connected()
                async for notice in conn.notifies():
                    heard(notice.payload)
