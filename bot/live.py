"""The throttled live message: a stream of progress becomes a few edits of one message.

Chat APIs punish frequent edits (Slack ~1 per 1.5 s per message, Telegram 1/s per chat and
~1 per 3 s in groups), so edits are coalesced to the newest view, unchanged text is never
sent, 429 answers are waited out, and the final view is delivered however long that takes
(bounded by ``give_up_after``; the result stays readable with /status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal, TypeVar

from bot.chat import RateLimited, Reply, Undeliverable
from bot.metrics import METRICS
from bot.view import MessageView

log = logging.getLogger(__name__)

T = TypeVar("T")


async def deliver(
    call: Callable[[], Awaitable[T]],
    *,
    give_up_after: float = 900.0,
    what: str = "message",
    adapter: str = "chat",
) -> T:
    """Run a chat API call until it succeeds, honouring RateLimited and backing off on faults;
    an :class:`Undeliverable` answer ends it at once.

    Every failure is counted in the metrics under ``adapter`` (rate limited or failed), and
    as a retry unless the deadline makes it the last.
    """
    deadline = time.monotonic() + give_up_after
    backoff = 1.0
    while True:
        kind: Literal["rate_limited", "failed"]
        try:
            return await call()
        except RateLimited as exc:
            wait = max(exc.retry_after, 0.05)
            kind = "rate_limited"
            log.info("chat API rate limit on %s; retrying in %.1fs", what, wait)
        except Undeliverable:
            METRICS.chat_trouble(adapter, "undeliverable", retrying=False)
            raise
        except Exception as exc:  # the chat API or network failed: retry, never crash the job
            wait = backoff
            backoff = min(backoff * 2, 60.0)
            kind = "failed"
            log.warning(
                "chat API call for %s failed (%s); retrying in %.0fs",
                what,
                type(exc).__name__,
                wait,
            )
        if time.monotonic() + wait > deadline:
            METRICS.chat_trouble(adapter, kind, retrying=False)
            METRICS.chat_trouble(adapter, "gave_up", retrying=False)
            raise TimeoutError(f"gave up delivering {what}")
        METRICS.chat_trouble(adapter, kind, retrying=True)
        await asyncio.sleep(wait)


class LiveMessage:
    def __init__(
        self,
        reply: Reply,
        interval: float,
        initial: MessageView | None = None,
        *,
        adapter: str = "chat",
    ) -> None:
        self._reply = reply
        self._adapter = adapter
        self._interval = interval
        self._sent = initial
        self._latest: MessageView | None = initial
        self._last_edit = time.monotonic() if initial is not None else 0.0
        self._wake = asyncio.Event()
        self._final = False
        self._task = asyncio.create_task(self._loop(), name="live-message")
        self.edits = 0

    def update(self, view: MessageView) -> None:
        """Remember the newest view; it is sent when the interval allows. Never blocks."""
        if self._final:
            return
        self._latest = view
        self._wake.set()

    async def finish(self, view: MessageView) -> None:
        """Deliver ``view`` as the last state of the message, then stop."""
        self._latest = view
        self._final = True
        self._wake.set()
        await self._task

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self._last_edit + self._interval - time.monotonic()
            if delay > 0:  # the final edit too respects the flood limit
                await asyncio.sleep(delay)
            view = self._latest
            if view is not None and view != self._sent:
                try:
                    await deliver(
                        partial(self._reply.edit, view), what="progress edit", adapter=self._adapter
                    )
                except (TimeoutError, Undeliverable) as exc:
                    log.error("could not deliver an edit of %s: %s", self._reply.ref, exc)
                self._sent = view
                self._last_edit = time.monotonic()
                self.edits += 1
            if self._final and self._latest == self._sent:
                return
