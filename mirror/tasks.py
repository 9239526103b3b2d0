"""Background tasks an object starts and must not outlive: one helper, so every owner
(the job service, the bot, an adapter) closes its tasks alike.

``asyncio.create_task`` keeps only a weak reference, and a task nobody awaits loses its
exception; a :class:`TaskSet` holds each task until it ends, logs an unexpected failure once,
and on :meth:`aclose` cancels what still runs and waits for it, so shutdown leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self,
        work: Coroutine[Any, Any, T],
        *,
        name: str,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def get(self, name: str) -> asyncio.Task[Any] | None:
        """The running task spawned as ``name`` (names the owner keeps unique, e.g. a job id)."""
        return next((t for t in self._tasks if t.get_name() == name), None)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Until every task has ended (new ones included), or ``stop`` is set."""
        stop = stop or asyncio.Event()
        stopping = asyncio.create_task(stop.wait())
        try:
            while self._tasks and not stop.is_set():
                await asyncio.wait([*self._tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        while self._tasks:  # a task being cancelled may still spawn another
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s failed", self._owner, task.get_name(), exc_info=exc)
