"""The job service: queue, concurrency, coalescing, "already mirrored", cancellation, retries.

A job is what one person asked in one command; its items copy concurrently under a global
limit. Identical copies in flight (same source, target and platform) run once and every
requester follows the same progress. Results are stored before they are announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mirror.copier import Advisor, Copier, LocalCopier, already_mirrored
from mirror.engines.base import CopyRequest, ProgressSink
from mirror.engines.chooser import EngineChooser
from mirror.errors import JOB_CANCELLED, MirrorError, NameConflict
from mirror.logcontext import JOB_ID
from mirror.models import Item, ItemStatus, Job, Outcome, platform_text
from mirror.progress import ProgressEvent, ProgressTracker, StageChanged
from mirror.quota import Budget, Clock, OverBudget, Quota, Reservation, Usage, Window
from mirror.store import Store, StoreError
from mirror.tasks import TaskSet
from mirror.text import Text, text_of

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

JobListener = Callable[[Job], None]
"""Called on the event loop after any change of a job (progress or status)."""

MEASURING = 4
"""Sizes asked at once, for the confirmation gate and a bulk plan: manifests only, but a
pasted list of a hundred images should not open a hundred connections."""


@dataclass
class _Flight:
    """One copy in progress and everyone watching it."""

    task: asyncio.Task[Outcome]
    sinks: list[ProgressSink] = field(default_factory=list)
    stage: StageChanged | None = None
    """The latest stage, replayed to a late joiner so it does not start from "queued"."""

    def emit(self, event: ProgressEvent) -> None:
        if isinstance(event, StageChanged):
            self.stage = event
        for sink in list(self.sinks):
            sink(event)


PUBLIC_ON_PUSH = frozenset({"docker.io"})
"""Registries that create a repository they receive by push as public (Docker Hub does,
unless the account's default privacy says otherwise)."""

OutcomeHook = Callable[[Outcome], None]
"""Called once per copy when it ends (coalesced requesters share it); for metrics."""


class JobService:
    def __init__(
        self,
        store: Store,
        engines: EngineChooser,
        *,
        concurrency: int = 2,
        attempts: int = 3,
        retry_wait: float = 1.0,
        max_bytes: int | None = None,
        on_outcome: OutcomeHook | None = None,
        advisor: Advisor | None = None,
        public_on_push: frozenset[str] = PUBLIC_ON_PUSH,
        wait_for_limits: bool = True,
        confirm_bytes: int | None = None,
        copier: Copier | None = None,
        budget: Budget | None = None,
        clock: Clock = time.time,
    ) -> None:
        """``wait_for_limits``: an item stopped by a pull limit waits for it to lift and runs
        again by itself (the bot); False fails it at once, saying when it lifts (scripts).
        ``confirm_bytes``: an image larger than this waits for :meth:`confirm` (the bot).
        ``copier`` runs each copy (default: this process's engines). ``budget``: what each
        copy must fit when it starts (MIRROR_QUOTA, MIRROR_TARGET_MAX_REPOS), by ``clock``."""
        self.budget = budget or Budget()
        self.clock = clock
        self._confirm_bytes = confirm_bytes
        self._answers: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._decisions: dict[tuple[str, int], asyncio.Future[None]] = {}
        """Items waiting for an admin's decision (:meth:`settle`)."""
        self._measuring = asyncio.Semaphore(MEASURING)
        self._public_on_push = public_on_push
        self._max_bytes = max_bytes
        self.store = store
        self.engines = engines
        self.copier: Copier = copier or LocalCopier(
            store,
            engines,
            concurrency=concurrency,
            attempts=attempts,
            retry_wait=retry_wait,
            advisor=advisor,
            wait_for_limits=wait_for_limits,
        )
        self._flights: dict[tuple[str, str, str], _Flight] = {}
        self._tasks = TaskSet("job service")
        self._jobs: dict[str, Job] = {}
        self._shutting_down = False
        self._on_outcome = on_outcome

    # -- public -----------------------------------------------------------------------------

    async def check_targets(self, items: list[Item]) -> None:
        """Refuse a target that already holds a copy of a *different* source (no network)."""
        for item in items:
            previous = await self.store.last_success(str(item.target))
            if previous is not None and previous.source != item.source:
                raise NameConflict(
                    Text(
                        "`{target}` already holds a copy of `{other}`; "
                        "choose another name for `{image}` with `$NAME`.",
                        target=str(item.target),
                        other=previous.source.familiar,
                        image=item.source.familiar,
                    )
                )

    async def submit(self, job: Job, listener: JobListener) -> asyncio.Task[Job]:
        """Store the job, then start it; the task's result is the finished job."""
        await self.store.add_job(job)
        return self.start(job, listener)

    def start(self, job: Job, listener: JobListener) -> asyncio.Task[Job]:
        """Start a stored job: a new one once its chat was told, or one a restart interrupted
        (an item waiting for a pull limit keeps waiting until its ``not_before``)."""
        for item in job.items:
            if item.status is ItemStatus.RUNNING:  # waiting and awaiting items keep at it
                item.status = ItemStatus.QUEUED
        return self._start(job, listener)

    async def used(self, person: str, quota: Quota, now: float) -> dict[Window, Usage]:
        """What ``person`` used in each window of ``quota`` that holds ``now``."""
        return {
            window: await self.store.usage(person, window.start(now)) for window in quota.windows
        }

    async def fail_interrupted(self, job: Job, reason: str) -> None:
        for idx, item in enumerate(job.items):
            if not item.status.finished:
                item.status = ItemStatus.FAILED
                item.error = reason
                await self.store.save_item(job, idx)

    @property
    def in_flight(self) -> int:
        """Copies waiting for a slot or running (coalesced requests count once)."""
        return len(self._flights)

    def active(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def cancel(self, job_id: str) -> bool:
        task = self._tasks.get(f"job-{job_id}")
        job = self._jobs.get(job_id)
        if task is None or task.done() or job is None:
            return False
        coro = task.get_coro()
        if isinstance(coro, Coroutine) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            # Not started yet, _run_job could not mark it: mark it here, and it has nothing to do.
            await self._mark_cancelled(job)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def measure(self, items: Sequence[Item]) -> list[int | None]:
        """Each item's size before any blob moves, a few at a time; None where it cannot be
        told (the copy itself will say why a source is unreachable)."""
        return list(await asyncio.gather(*(self._measure(item) for item in items)))

    async def confirm(self, job_id: str, idx: int | None = None) -> int:
        """The requester agreed to copy the awaiting items of a running job (one, or all):
        stored before the copy goes on, so a restart does not ask again. How many were
        waiting."""
        job = self._jobs.get(job_id)
        if job is None:
            return 0
        agreed = 0
        for i, item in enumerate(job.items):
            if item.status is not ItemStatus.AWAITING or idx not in (None, i):
                continue
            item.status = ItemStatus.QUEUED
            await self.store.save_item(job, i)
            answer = self._answers.get((job_id, i))
            if answer is not None and not answer.done():
                answer.set_result(None)
            agreed += 1
        return agreed

    def held(self) -> list[tuple[Job, int]]:
        """Every image of a running job that waits for an admin's decision, oldest job first."""
        return [
            (job, idx)
            for job in sorted(self._jobs.values(), key=lambda job: job.created)
            for idx, item in enumerate(job.items)
            if item.status is ItemStatus.AWAITING_APPROVAL
        ]

    async def settle(
        self, job_id: str, idx: int, status: ItemStatus, by: str | None, reason: str | None
    ) -> bool:
        """An admin's decision for a held image of a running job: ``QUEUED`` (approved: it
        copies, and its size needs no confirmation), or a finished status (denied, expired)
        with ``reason``. Stored before the job goes on. False when that image is not held
        here (decided already, or its job is not running in this process)."""
        job = self._jobs.get(job_id)
        if job is None or not 0 <= idx < len(job.items):
            return False
        item = job.items[idx]
        if item.status is not ItemStatus.AWAITING_APPROVAL:
            return False
        item.status, item.approved_by, item.error = status, by, reason
        await self.store.save_item(job, idx)
        answer = self._decisions.get((job_id, idx))
        if answer is not None and not answer.done():
            answer.set_result(None)
        return True

    async def aclose(self) -> None:
        """Stop running jobs without marking them: a restart resumes them from the store."""
        self._shutting_down = True
        await self.copier.aclose()  # first: what it runs elsewhere is not cancelled, only left
        await self._tasks.aclose()
        for flight in list(self._flights.values()):
            flight.task.cancel()

    # -- running ------------------------------------------------------------------------------

    def _start(self, job: Job, listener: JobListener) -> asyncio.Task[Job]:
        self._jobs[job.id] = job
        # The job's task and every task it starts log with its id (mirror.logcontext).
        context = contextvars.copy_context()
        context.run(JOB_ID.set, job.id)
        task = self._tasks.spawn(
            self._run_job(job, listener), name=f"job-{job.id}", context=context
        )

        def forget(_: asyncio.Task[Job]) -> None:
            self._jobs.pop(job.id, None)

        task.add_done_callback(forget)
        return task

    async def _run_job(self, job: Job, listener: JobListener) -> Job:
        pending = [i for i, item in enumerate(job.items) if not item.status.finished]
        runs = [asyncio.create_task(self._run_item(job, i, listener)) for i in pending]
        try:
            await asyncio.gather(*runs)
        except asyncio.CancelledError:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            if self._shutting_down:
                raise
            await self._mark_cancelled(job)
            listener(job)
            raise
        return job

    async def _mark_cancelled(self, job: Job) -> None:
        for idx, item in enumerate(job.items):
            if not item.status.finished:
                item.status = ItemStatus.CANCELLED
                item.error = JOB_CANCELLED
                item.progress = None
                await self.store.save_item(job, idx)

    async def _run_item(self, job: Job, idx: int, listener: JobListener) -> None:
        """Copy one item; when a pull limit stops it, wait for the limit to lift and copy
        again (other items of the job go on meanwhile; a restart resumes the wait)."""
        item = job.items[idx]
        await self._approval(job, idx, listener)
        if item.status.finished:  # denied, or nobody answered in time
            listener(job)
            return
        await self._confirmation(job, idx, listener)
        reservation = await self._reserve(job, idx)
        if item.status.finished:  # over budget: stored as failed, nothing copied
            listener(job)
            return
        while True:
            if item.status is ItemStatus.WAITING:
                await self._wait_for_limit(job, idx, listener)
            item.apply(await self._copy_item(job, idx, listener))
            await self.store.save_item(job, idx)
            if item.status is not ItemStatus.WAITING:
                break
            log.info("job %s: %s waits: %s", job.id, item.target, item.error)
            listener(job)
        if reservation is not None:  # what the copy used, or nothing when it moved nothing
            moved = (item.bytes or 0) if item.status is ItemStatus.SUCCEEDED else None
            try:
                await self.store.settle(reservation, moved)
            except StoreError as exc:  # the answer still goes out; the claim stays as it was
                log.error("job %s: %s not settled: %s", job.id, item.target, exc.__cause__)
        await self._note_public(item)
        listener(job)

    async def _reserve(self, job: Job, idx: int) -> Reservation | None:
        """Claim the requester's quota and the target's room as the copy starts (in the
        store, in one transaction: two requests at once cannot both take the last image).
        Over budget, the item fails with one sentence and nothing is copied, unless the
        target already holds it (nothing would move)."""
        quota = self.budget.quota_of(job.requester)
        if quota is None and self.budget.max_repos is None:
            return None
        item = job.items[idx]
        size = 0
        if quota is not None and quota.counts_bytes:
            size = item.bytes if item.bytes is not None else await self._measure(item) or 0
        now = self.clock()
        reservation = Reservation(job.id, idx, job.requester, item.target.name, size, now)
        try:
            await self.store.reserve(reservation, self.budget, now)
        except OverBudget as exc:
            if await self._held(item):  # "already mirrored": counted only if it moves bytes
                return reservation
            log.info("job %s: %s over budget: %s", job.id, item.target, exc)
            item.status, item.error = ItemStatus.FAILED, text_of(exc)
            await self.store.save_item(job, idx)
            return None
        return reservation

    async def _wait_for_limit(self, job: Job, idx: int, listener: JobListener) -> None:
        item = job.items[idx]
        while (delay := (item.not_before or 0.0) - time.time()) > 0:  # wall clock: as stored
            await asyncio.sleep(delay)
        item.status, item.error, item.not_before = ItemStatus.QUEUED, None, None
        await self.store.save_item(job, idx)
        listener(job)

    async def _copy_item(self, job: Job, idx: int, listener: JobListener) -> Outcome:
        """The item's copy, started or joined when an identical one is in flight."""
        item = job.items[idx]
        tracker = ProgressTracker()

        def sink(event: ProgressEvent) -> None:
            tracker.feed(event)
            if isinstance(event, StageChanged) and item.status is ItemStatus.QUEUED:
                item.status = ItemStatus.RUNNING
            item.progress = tracker.snapshot()
            listener(job)

        key = (str(item.source), str(item.target), platform_text(item.platform))
        flight = self._flights.get(key)
        if flight is None:
            request = CopyRequest(item.source, item.target, item.platform, self._max_bytes)
            new = _Flight(task=asyncio.create_task(self._copy_once(request, key)))
            self._flights[key] = flight = new
            new.task.add_done_callback(lambda task: self._landed(key, task))
        else:
            log.info("job %s: %s coalesced with a copy in flight", job.id, item.target)
            if flight.stage is not None:
                sink(flight.stage)
        flight.sinks.append(sink)
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.sinks.remove(sink)
            if not flight.sinks and not flight.task.done():
                flight.task.cancel()  # the last watcher left: nobody wants this copy any more

    def _landed(self, key: tuple[str, str, str], task: asyncio.Task[Outcome]) -> None:
        self._flights.pop(key, None)
        if task.cancelled():
            if self._shutting_down:  # a restart resumes it: not an outcome yet
                return
            outcome = Outcome(ItemStatus.CANCELLED)
        elif task.exception() is None:
            outcome = task.result()
        else:  # _copy_once turns every error into an outcome; nothing to count
            return
        log.info(
            "copy to %s ended: %s (engine %s, %s bytes, %.2fs)%s",
            key[1],
            outcome.status.value,
            outcome.engine or "-",
            outcome.bytes if outcome.bytes is not None else "-",
            outcome.seconds or 0.0,
            f": {outcome.error}" if outcome.error else "",
        )
        if self._on_outcome is not None and outcome.status.finished:  # a wait is no end
            self._on_outcome(outcome)

    async def _copy_once(self, request: CopyRequest, key: tuple[str, str, str]) -> Outcome:
        def emit(event: ProgressEvent) -> None:
            flight = self._flights.get(key)
            if flight is not None:
                flight.emit(event)

        return await self.copier.copy(request, emit)

    async def _measure(self, item: Item) -> int | None:
        request = CopyRequest(item.source, item.target, item.platform, self._max_bytes)
        async with self._measuring:
            try:
                return await self.engines.measure(request)
            except MirrorError:
                return None

    async def _approval(self, job: Job, idx: int, listener: JobListener) -> None:
        """A held image (``AWAITING_APPROVAL``) waits for :meth:`settle`, before anything
        reaches its source: not even its size is asked. Outside the copy slots, like the
        confirmation gate; a restart resumes the wait."""
        if job.items[idx].status is not ItemStatus.AWAITING_APPROVAL:
            return
        key = (job.id, idx)
        self._decisions[key] = answer = asyncio.get_running_loop().create_future()
        log.info("job %s: %s awaits an admin's approval", job.id, job.items[idx].source)
        listener(job)
        try:
            await answer
        finally:
            self._decisions.pop(key, None)
        listener(job)

    async def _confirmation(self, job: Job, idx: int, listener: JobListener) -> None:
        """MIRROR_CONFIRM_BYTES: an image measured over it waits, stored as ``AWAITING`` with
        its size, until :meth:`confirm` (or a cancel). Outside the copy slots, so a question
        nobody answers holds no one else up; before the flight, so each requester answers for
        their own job. The listener hears of the wait only once it is stored. A job an admin
        agreed to as a whole (``Job.confirmed``) asks nothing, nor does an image an admin
        approved (their approval confirms its size too)."""
        item = job.items[idx]
        if self._confirm_bytes is None or job.confirmed or item.approved_by is not None:
            if item.status is ItemStatus.AWAITING:  # asked before a restart that stopped asking
                item.status = ItemStatus.QUEUED
            return
        if item.status is ItemStatus.QUEUED:
            if item.bytes is not None:  # measured and agreed before a restart
                return
            size = await self._measure(item)
            if size is None or size <= self._confirm_bytes or await self._held(item):
                return
            item.status, item.bytes = ItemStatus.AWAITING, size
            await self.store.save_item(job, idx)
        if item.status is not ItemStatus.AWAITING:  # agreed while it was being stored
            return
        key = (job.id, idx)
        self._answers[key] = answer = asyncio.get_running_loop().create_future()
        log.info("job %s: %s awaits confirmation (%s bytes)", job.id, item.source, item.bytes)
        listener(job)
        try:
            await answer
        finally:
            self._answers.pop(key, None)
        listener(job)

    async def _held(self, item: Item) -> bool:
        """Whether the target already holds this copy: nothing would move, nothing to ask."""
        request = CopyRequest(item.source, item.target, item.platform, self._max_bytes)
        try:
            return (
                await already_mirrored(self.store, await self.engines.choose(request), request)
                is not None
            )
        except MirrorError:
            return False

    async def _note_public(self, item: Item) -> None:
        """Say once per repository, ever (the store remembers), that the copy may be public."""
        target = item.target
        if item.status is not ItemStatus.SUCCEEDED or target.registry not in self._public_on_push:
            return
        if await self.store.first_notice(f"public:{target.name}"):
            item.notes += (
                Text(
                    "`{registry}` creates a repository it receives by push as public (unless "
                    "the account's default is private): anyone can pull `{repository}` "
                    "unless you make it private in its settings.",
                    registry=target.registry,
                    repository=target.repository,
                ),
            )
