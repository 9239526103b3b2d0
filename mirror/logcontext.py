"""Which job the running code works for, so every log line of a job can name it.

A context variable, not a parameter: asyncio copies the context into every task a job starts
(its copies, the engines' worker calls, the bot's live message), so the id follows the work
without any function passing it along. The bot's logging filter reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tasks created inside this block (and the block itself) log with ``job_id``."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)
