"""What each page shows, as data: the HTML is a template over these dicts, and each page's
``.json`` twin is the same dict (Datasette's habit), so tests check what a person sees by
reading the data, and the browser test checks that the HTML shows it.

Everything here is in the current language (:func:`bot.i18n.speaking`, set by the caller):
the words a chat answer would use (a job's title, an image's state, a failure's sentence, the
commands to paste) come from :mod:`bot.render`, so the page and the chat say the same. Values
a program reads (states, digests, bytes, seconds, times) stay as they are beside the words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot import render
from bot.i18n import _, localize, ngettext
from bot.rewrite import kustomize_images
from bot.view import Row, bar_text, human_bytes, human_seconds
from bot.web.chart import bars, hourly
from mirror.artifacts import along_text
from mirror.models import Item, ItemStatus, Job, Watch, platform_text

if TYPE_CHECKING:
    from mirror.engines.registry.hosts import PullLimit

Page = dict[str, Any]

KUSTOMIZATION = "kustomization.yaml"
REWRITE = "rewrite.txt"
JOBS_SHOWN = 50
"""Jobs the operator's view lists (newest first, after its filters)."""


def when(seconds: float) -> str:
    """An instant as programs read it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when_text(seconds: float, now: float) -> str:
    """``2024-05-01 14:05 UTC (3m ago)``."""
    shown = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
    ago = _("{duration} ago").format(duration=human_seconds(max(0.0, now - seconds)))
    return f"{shown} ({ago})"


def job_path(base: str, job: Job) -> str:
    return f"{base}/jobs/{job.id}/{job.token}"


# -- the job page -----------------------------------------------------------------------------


def job_page(job: Job, options: render.RenderOptions, base: str, now: float | None = None) -> Page:
    """The job's page: its title and state as the chat says them, then each image."""
    now = time.time() if now is None else now
    view = render.answer(job, options) if job.finished else render.progress(job, options)
    path = job_path(base, job)
    ok = [item for item in job.items if item.status.ok]
    downloads = []
    if ok:
        downloads.append({"name": KUSTOMIZATION, "href": f"{path}/{KUSTOMIZATION}"})
    if job.rewrite:
        downloads.append({"name": REWRITE, "href": f"{path}/{REWRITE}"})
    return {
        "job": job.id,
        "title": view.title,
        "tone": view.tone.value,
        "state": job.state,
        "state_text": render.job_states().get(job.state, job.state),
        "finished": job.finished,
        "created": when(job.created),
        "created_text": when_text(job.created, now),
        "images": len(job.items),
        "ready": len(ok),
        "lines": list(view.lines),
        "items": [
            _item(item, index, row, options)
            for index, (item, row) in enumerate(zip(job.items, view.rows, strict=True))
        ],
        "downloads": downloads,
        "links": {"page": path, "json": f"{path}.json", "events": f"{path}/events"},
    }


def _item(item: Item, index: int, row: Row, options: render.RenderOptions) -> Page:
    snap = item.progress
    progress = None
    if row.bar is not None:
        bar = row.bar
        progress = {
            "done": bar.done,
            "total": bar.total,
            "percent": round(100 * bar.done / bar.total, 1) if bar.total else None,
            "bytes_per_second": bar.bytes_per_second,
            "eta_seconds": bar.eta_seconds,
            "text": bar_text(bar),
        }
    identical = (
        item.digest_identical if item.source_digest and item.target_digest else None
    )  # unknown until both are
    return {
        "number": index + 1,
        "source": item.source.familiar,
        "source_reference": str(item.source),
        "target": f"{item.target.name}:{item.target.tag}",
        "status": item.status.value,
        "stage": snap.stage.value if snap is not None and not item.status.finished else None,
        "state_text": row.state,
        "tone": row.tone.value,
        "progress": progress,
        "bytes": item.bytes,
        "size": human_bytes(item.bytes) if item.bytes is not None else None,
        "seconds": item.seconds,
        "time": human_seconds(item.seconds) if item.seconds is not None else None,
        "engine": item.engine,
        "platform": platform_text(item.platform),
        "artifact": item.artifact.value if item.artifact else None,
        "source_digest": item.source_digest,
        "target_digest": item.target_digest,
        "digest_identical": identical,
        "digest_text": _digest_text(identical),
        "referrers": [
            {"digest": r.digest, "artifact_type": r.artifact_type, "kind": r.kind.value}
            for r in item.referrers
        ],
        "referrers_text": localize(along_text(item.referrers)) or None,
        "pull": render.commands(item, options) if item.status.ok else [],
        "error": localize(item.error) if item.error else None,
        "suggestions": render.suggestion_commands(item),
        "waiting_until": when(item.not_before) if item.not_before else None,
    }


def _digest_text(identical: bool | None) -> str | None:
    if identical is None:
        return None
    if identical:
        return _("digest identical to the source")
    return _(
        "digest differs from the source (the daemon rebuilt the manifest), so "
        "signatures and SBOMs made for the source do not apply to it; for an exact copy "
        "that brings them use --platform all or MIRROR_ENGINE=registry"
    )


def kustomization(job: Job) -> str:
    """The kustomize ``images:`` block for what was copied, as a file to download."""
    copied = [item for item in job.items if item.status.ok and "$" not in item.spec]
    return "\n".join(kustomize_images(copied)) + "\n" if copied else ""


# -- the operator's view ----------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the operator's job list is narrowed to (the form's fields, as typed)."""

    person: str = ""
    state: str = ""
    source: str = ""

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        return cls(
            query.get("person", "").strip()[:100],
            query.get("state", "").strip()[:40],
            query.get("source", "").strip()[:200],
        )


@dataclass(frozen=True)
class Workers:
    """Who copies: this process (a SQLite bot), or the queue's workers (PostgreSQL)."""

    queue: bool
    in_flight: int
    """Copies this process waits for (its own, or queued for workers)."""
    concurrency: int
    workers: int | None = None
    waiting: int | None = None
    running: int | None = None
    error: str | None = None
    """Why the queue could not be counted (one sentence)."""


@dataclass(frozen=True)
class Overview:
    """What the operator's view is made of, as the store and the service have it."""

    operator: str
    jobs: Sequence[Job]
    """Newest first, already filtered by person and source (the state is filtered here)."""
    unfinished: Sequence[Job]
    watches: Sequence[Watch]
    finished: Sequence[tuple[float, ItemStatus, int | None]]
    copies: Sequence[tuple[str, int, int]]
    limits: Mapping[str, PullLimit]
    workers: Workers


HELD = frozenset({ItemStatus.WAITING, ItemStatus.AWAITING, ItemStatus.AWAITING_APPROVAL})
"""Item states that wait for something besides a free slot: a pull limit, an answer."""


def admin_page(overview: Overview, filters: Filters, base: str, now: float | None = None) -> Page:
    now = time.time() if now is None else now
    states = render.job_states()
    jobs = [job for job in overview.jobs if not filters.state or job.state == filters.state]
    hours = hourly(overview.finished, now)
    return {
        "operator": overview.operator,
        "filters": {"person": filters.person, "state": filters.state, "source": filters.source},
        "states": [{"value": value, "text": text} for value, text in states.items()],
        "jobs": [_job_row(job, base, now, states) for job in jobs[:JOBS_SHOWN]],
        "more_jobs": max(0, len(jobs) - JOBS_SHOWN),
        "held": [
            _held(job, index, item, base, now)
            for job in overview.unfinished
            for index, item in enumerate(job.items)
            if item.status in HELD
        ]
        + [_held_watch(watch) for watch in overview.watches if watch.held],
        "pull_limits": [
            {
                "registry": registry,
                "limit": limit.limit,
                "remaining": limit.remaining,
                "seen": when(limit.seen_at.timestamp()),
                "text": render.pull_limit_text(registry, limit),
            }
            for registry, limit in sorted(overview.limits.items())
        ],
        "watches": [_watch(watch, now) for watch in overview.watches],
        "throughput": {
            "hours": [
                {
                    "start": when(hour.start),
                    "images": hour.images,
                    "failed": hour.failed,
                    "bytes": hour.bytes,
                    "text": _("{hour}: {images}, {failed} failed, {size}").format(
                        hour=datetime.fromtimestamp(hour.start, UTC).strftime("%H:00 UTC"),
                        images=ngettext("{n} image", "{n} images", hour.images).format(
                            n=hour.images
                        ),
                        failed=hour.failed,
                        size=human_bytes(hour.bytes),
                    ),
                }
                for hour in hours
            ],
            "bars": [
                {"x": b.x, "y": b.y, "width": b.width, "height": b.height} for b in bars(hours)
            ],
            "images": sum(hour.images for hour in hours),
            "failed": sum(hour.failed for hour in hours),
            "bytes": sum(hour.bytes for hour in hours),
            "size": human_bytes(sum(hour.bytes for hour in hours)),
        },
        "workers": _workers(overview.workers),
        "registries": _registries(overview.copies),
    }


def _job_row(job: Job, base: str, now: float, states: Mapping[str, str]) -> Page:
    moved = sum(item.bytes or 0 for item in job.items if item.status is ItemStatus.SUCCEEDED)
    return {
        "job": job.id,
        "href": job_path(base, job) if job.token else None,
        "requester": job.requester,
        "chat": job.chat,
        "created": when(job.created),
        "created_text": when_text(job.created, now),
        "state": job.state,
        "state_text": states.get(job.state, job.state),
        "sources": [item.source.familiar for item in job.items],
        "bytes": moved,
        "size": human_bytes(moved),
    }


def _held(job: Job, index: int, item: Item, base: str, now: float) -> Page:
    return {
        "job": job.id,
        "href": job_path(base, job) if job.token else None,
        "number": index + 1,
        "source": item.source.familiar,
        "requester": job.requester,
        "status": item.status.value,
        "detail": localize(item.error) if item.error else None,
        "until": when(item.not_before) if item.not_before else None,
        "until_text": when_text(item.not_before, now) if item.not_before else None,
        "decidable": item.status is ItemStatus.AWAITING_APPROVAL,
    }


def _held_watch(watch: Watch) -> Page:
    """A watch that waits for an admin's approval before its first check."""
    return {
        "job": watch.id,
        "href": None,
        "number": None,
        "source": watch.shown,
        "requester": watch.requester,
        "status": ItemStatus.AWAITING_APPROVAL.value,
        "detail": _("a watch, waiting for approval"),
        "until": None,
        "until_text": None,
        "decidable": True,
    }


def _watch(watch: Watch, now: float) -> Page:
    return {
        "watch": watch.id,
        "image": watch.shown,
        "platform": platform_text(watch.platform),
        "requester": watch.requester,
        "chat": watch.chat,
        "last_check": when(watch.last_check) if watch.last_check else None,
        "last_check_text": when_text(watch.last_check, now) if watch.last_check else None,
        "next_check": when(watch.next_check) if watch.next_check else None,
        "error": localize(watch.error) if watch.error else None,
        "held": watch.held,
    }


def _workers(workers: Workers) -> Page:
    return {
        "queue": workers.queue,
        "in_flight": workers.in_flight,
        "concurrency": workers.concurrency,
        "workers": workers.workers,
        "waiting": workers.waiting,
        "running": workers.running,
        "error": localize(workers.error) if workers.error else None,
    }


def _registries(copies: Sequence[tuple[str, int, int]]) -> list[Page]:
    """Copies and bytes per source registry, busiest first."""
    per: dict[str, tuple[int, int]] = {}
    for source, count, size in copies:
        registry = source.split("/", 1)[0]
        had = per.get(registry, (0, 0))
        per[registry] = (had[0] + count, had[1] + size)
    ranked = sorted(per.items(), key=lambda entry: (-entry[1][0], entry[0]))
    return [
        {"registry": registry, "copies": count, "bytes": size, "size": human_bytes(size)}
        for registry, (count, size) in ranked
    ]
