"""Chat delivery: one chat API call, retried while the platform's trouble may pass.

What a retry can fix is the platform's or the network's: a 429 (:class:`RateLimited`, waited
out for as long as it asks), a server error or an unreachable API (:class:`ChatUnavailable`,
or a network error an adapter let through), backed off exponentially. A refusal for good
(:class:`Undeliverable`) ends at once. Anything else is a bug of ours or of the adapter: it
is logged with its traceback, once, and not retried (:class:`DeliveryBug`), because a bug
retried for fifteen minutes only hides it.

A delivery that fails ends in :class:`GaveUp` or :class:`Undeliverable` (a
:class:`DeliveryBug` among them), both under :class:`bot.chat.ChatError`, which callers catch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, NoReturn, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_before_delay,
    wait_exponential,
)

from bot.chat import ChatError, ChatUnavailable, RateLimited, Undeliverable
from bot.metrics import METRICS

log = logging.getLogger(__name__)

T = TypeVar("T")


class GaveUp(ChatError, TimeoutError):
    """The chat did not take a call before the deadline; its platform's trouble lasted.

    A :class:`ChatError` like every delivery failure, and a ``TimeoutError`` still, for the
    callers that catch ``(TimeoutError, Undeliverable)``."""


class DeliveryBug(Undeliverable):
    """A chat call failed in a way no retry can fix: a bug, logged with its traceback."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, GaveUp):  # a nested delivery already waited long enough
        return False
    return isinstance(exc, RateLimited | ChatUnavailable | OSError | TimeoutError)


_backoff = wait_exponential(multiplier=1, max=60)


def _wait(state: RetryCallState) -> float:
    """A 429 says how long; anything else backs off 1, 2, 4 ... 60 s."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, RateLimited):
        return max(exc.retry_after, 0.05)
    return _backoff(state)


CHAT_DELIVERY = AsyncRetrying(retry=retry_if_exception(_transient), wait=_wait, reraise=True)
"""The one retry policy of chat calls; :func:`deliver` adds a deadline and reporting."""


def _kind(state: RetryCallState) -> Literal["rate_limited", "failed"]:
    exc = state.outcome.exception() if state.outcome is not None else None
    return "rate_limited" if isinstance(exc, RateLimited) else "failed"


async def deliver(
    call: Callable[[], Awaitable[T]],
    *,
    give_up_after: float = 900.0,
    what: str = "message",
    adapter: str = "chat",
) -> T:
    """Run a chat API call until it succeeds, or until the next wait would pass
    ``give_up_after`` seconds (:class:`GaveUp`).

    Every failure is counted in the metrics under ``adapter`` (rate limited, failed or
    undeliverable), and as a retry unless it was the last.
    """

    def retrying(state: RetryCallState) -> None:
        kind = _kind(state)
        METRICS.chat_trouble(adapter, kind, retrying=True)
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.upcoming_sleep
        if kind == "rate_limited":
            log.info("chat API rate limit on %s; retrying in %.1fs", what, wait)
        else:
            reason = type(exc).__name__
            log.warning("chat API call for %s failed (%s); retrying in %.0fs", what, reason, wait)

    def give_up(state: RetryCallState) -> NoReturn:
        METRICS.chat_trouble(adapter, _kind(state), retrying=False)
        METRICS.chat_trouble(adapter, "gave_up", retrying=False)
        raise GaveUp(f"gave up delivering {what}")

    policy = CHAT_DELIVERY.copy(
        stop=stop_before_delay(give_up_after),
        before_sleep=retrying,
        retry_error_callback=give_up,
    )
    try:
        return await policy(call)
    except GaveUp:
        raise
    except Undeliverable:
        METRICS.chat_trouble(adapter, "undeliverable", retrying=False)
        raise
    except Exception as exc:
        METRICS.chat_trouble(adapter, "failed", retrying=False)
        log.exception("delivering %s failed on a bug, not retried", what)
        raise DeliveryBug(f"delivering {what} failed ({type(exc).__name__})", code="bug") from exc


def reconnecting(transient: Callable[[BaseException], bool], what: str) -> AsyncRetrying:
    """The retry policy of an adapter's start-up against a chat API that may be down for a
    while: on ``transient`` errors, forever, waiting 1, 2, 4 ... 60 s; anything else ends it."""

    def waiting(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.upcoming_sleep
        log.warning("%s does not answer (%s); retrying in %.0fs", what, type(exc).__name__, wait)

    return AsyncRetrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential(multiplier=1, max=60),
        before_sleep=waiting,
        reraise=True,
    )
