"""Chat delivery (``bot.delivery.deliver``): what is retried, how long, and what is not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.chat import ChatError, ChatUnavailable, RateLimited, Undeliverable
from bot.delivery import DeliveryBug, GaveUp, deliver


def answering(*answers: BaseException | str) -> tuple[Callable[[], Awaitable[str]], list[float]]:
    """A chat call that raises or returns ``answers`` in turn; the times it was called."""
    left = list(answers)
    calls: list[float] = []

    async def call() -> str:
        calls.append(time.monotonic())
        answer = left.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return call, calls


async def test_a_429_is_waited_out_for_as_long_as_the_chat_asks() -> None:
    call, calls = answering(RateLimited(0.3), "sent")
    assert await deliver(call) == "sent"
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.3


@pytest.mark.parametrize(
    "fault",
    [
        ChatUnavailable("502 Bad Gateway"),
        ConnectionResetError("reset by peer"),
        TimeoutError("read timed out"),
    ],
    ids=["server error", "network error", "timeout"],
)
@pytest.mark.slow  # real backoff waits
async def test_io_trouble_is_retried_with_backoff(fault: Exception) -> None:
    call, calls = answering(fault, "sent")
    assert await deliver(call) == "sent"
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 1.0  # the first backoff step


async def test_a_refusal_for_good_ends_at_once() -> None:
    call, calls = answering(Undeliverable("archived", code="is_archived"), "sent")
    with pytest.raises(Undeliverable, match="archived"):
        await deliver(call)
    assert len(calls) == 1


async def test_any_other_exception_is_a_bug_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call, calls = answering(KeyError("ts"), "sent")
    with caplog.at_level(logging.ERROR), pytest.raises(DeliveryBug) as caught:
        await deliver(call, what="final answer")
    assert len(calls) == 1
    assert isinstance(caught.value.__cause__, KeyError)
    [record] = [r for r in caplog.records if r.name == "bot.delivery"]
    assert "final answer" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError


async def test_a_deadline_the_next_wait_would_pass_gives_up_without_waiting() -> None:
    call, calls = answering(RateLimited(30.0), "sent")
    with pytest.raises(GaveUp):
        await deliver(call, give_up_after=5.0)
    assert len(calls) == 1


async def test_a_nested_delivery_that_gave_up_is_not_retried_again() -> None:
    inner, inner_calls = answering(RateLimited(30.0))

    async def outer() -> str:
        return await deliver(inner, give_up_after=1.0, what="continued answer")

    with pytest.raises(GaveUp):
        await deliver(outer)
    assert len(inner_calls) == 1


@pytest.mark.parametrize(
    ("answer", "give_up_after", "raised"),
    [
        (Undeliverable("archived", code="is_archived"), 900.0, Undeliverable),
        (KeyError("ts"), 900.0, DeliveryBug),
        (RateLimited(30.0), 5.0, GaveUp),
    ],
    ids=["refused", "bug", "gave up"],
)
async def test_every_failure_of_a_delivery_is_one_chat_error(
    answer: Exception, give_up_after: float, raised: type[ChatError]
) -> None:
    """Callers catch ``ChatError``; ``GaveUp`` stays a ``TimeoutError`` for those that catch
    ``(TimeoutError, Undeliverable)``."""
    call, _ = answering(answer)
    with pytest.raises(ChatError) as caught:
        await deliver(call, give_up_after=give_up_after)
    assert type(caught.value) is raised
    assert isinstance(caught.value, TimeoutError | Undeliverable)


async def test_cancelling_stops_the_retries() -> None:
    call, calls = answering(*[RateLimited(0.05)] * 1000)
    task = asyncio.create_task(deliver(call))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count = len(calls)
    await asyncio.sleep(0.2)
    assert len(calls) == count
