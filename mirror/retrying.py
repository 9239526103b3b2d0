"""One unit of work tried again on a passing fault, with exponential backoff, and tenacity
imported only once a retry is needed.

tenacity imports its tornado support whenever tornado is installed (python-telegram-bot's
webhooks bring it into the image): some 30-50 ms of every ``mirror-bot mirror`` that never
retries anything, which is nearly every one. So the first attempt runs on its own, and
tenacity takes over the attempts left when it fails with a fault worth retrying (the waits
are what ``wait_exponential(multiplier, max=max_wait)`` gives over all the attempts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def backoff(attempt: int, multiplier: float, max_wait: float) -> float:
    """The wait after attempt ``attempt`` (1-based) failed: tenacity's ``wait_exponential``."""
    return max(0.0, min(multiplier * 2.0 ** (attempt - 1), max_wait))


async def retried(
    step: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    retry_if: Callable[[BaseException], bool],
    multiplier: float,
    max_wait: float,
) -> T:
    """``step()``, tried up to ``attempts`` times while it fails with what ``retry_if``
    accepts; the last failure is raised as it is."""
    try:
        return await step()
    except Exception as exc:
        if attempts <= 1 or not retry_if(exc):
            raise
    import tenacity  # a retry is needed: now it is worth its import

    await asyncio.sleep(backoff(1, multiplier, max_wait))
    async for attempt in tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(attempts - 1),
        wait=lambda state: backoff(state.attempt_number + 1, multiplier, max_wait),
        retry=tenacity.retry_if_exception(retry_if),
        reraise=True,
    ):
        with attempt:
            return await step()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
