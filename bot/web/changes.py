"""A running job's page follows it live: the job pages' side of :class:`bot.following.JobObserver`.

The job follower tells :class:`JobChanges` of every change the chat's live message is told of;
each open page's event stream (server-sent events, :mod:`bot.web.app`) waits on its own
:class:`Watching`, which keeps only the newest state, so a slow browser skips states rather
than queueing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from mirror.models import Job


class Watching:
    """One open page's view of one job: the newest state, and whether its answer is out."""

    def __init__(self) -> None:
        self.job: Job | None = None
        self.ended = False
        self.closed = False
        """The server is stopping: the stream ends without a word."""
        self._changed = asyncio.Event()

    def tell(self, job: Job, *, ended: bool = False) -> None:
        self.job = job
        self.ended = self.ended or ended
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def wait(self) -> None:
        """Until something changed since the last wait."""
        await self._changed.wait()
        self._changed.clear()


class JobChanges:
    """Who watches which job's page right now; told by the job follower on the event loop."""

    def __init__(self) -> None:
        self._watching: dict[str, set[Watching]] = {}

    def changed(self, job: Job) -> None:
        for watching in self._watching.get(job.id, ()):
            watching.tell(job)

    def ended(self, job: Job) -> None:
        for watching in self._watching.get(job.id, ()):
            watching.tell(job, ended=True)

    def close(self) -> None:
        """The server stops: every open stream ends."""
        for found in self._watching.values():
            for watching in found:
                watching.close()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Watching]:
        watching = Watching()
        self._watching.setdefault(job_id, set()).add(watching)
        try:
            yield watching
        finally:
            others = self._watching.get(job_id, set())
            others.discard(watching)
            if not others:
                self._watching.pop(job_id, None)

    def watched(self) -> int:
        """Pages open on running jobs (for tests and the log)."""
        return sum(len(found) for found in self._watching.values())
