"""The throttled live message against a recording chat that rate-limits like the real ones."""

import asyncio
import time

import pytest

from bot.chat import RateLimited, Undeliverable
from bot.live import LiveMessage, deliver
from bot.view import MessageView


class RecordingReply:
    """A chat message that records edits and answers 429 when edited too often."""

    def __init__(self, *, min_gap: float = 0.0, storm: int = 0, retry_after: float = 0.2) -> None:
        self.edits: list[tuple[float, str]] = []
        self.rejected = 0
        self._min_gap = min_gap
        self._storm = storm
        self._retry_after = retry_after

    @property
    def ref(self) -> str:
        return "m1"

    async def edit(self, view: MessageView) -> None:
        now = time.monotonic()
        if self._storm > 0:
            self._storm -= 1
            self.rejected += 1
            raise RateLimited(self._retry_after)
        if self.edits and now - self.edits[-1][0] < self._min_gap:
            self.rejected += 1
            raise RateLimited(self._min_gap)
        self.edits.append((now, view.title))


def view(n: int) -> MessageView:
    return MessageView(f"state {n}")


async def test_bursts_are_coalesced_to_the_newest_view_within_the_interval() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, interval=0.3, initial=view(0))
    for n in range(1, 200):
        live.update(view(n))
        await asyncio.sleep(0.005)
    await live.finish(view(999))
    titles = [t for _, t in reply.edits]
    assert titles[-1] == "state 999"
    assert len(titles) <= 6  # ~1 s of updates at one edit per 0.3 s, plus the final one
    gaps = [b - a for (a, _), (b, _) in zip(reply.edits, reply.edits[1:], strict=False)]
    assert all(gap >= 0.29 for gap in gaps)


async def test_unchanged_text_is_not_sent() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, interval=0.01, initial=view(1))
    for _ in range(20):
        live.update(view(1))
        await asyncio.sleep(0.002)
    await live.finish(view(1))
    assert reply.edits == []


@pytest.mark.timeout(20)
async def test_rate_limit_storm_still_delivers_the_final_state() -> None:
    reply = RecordingReply(storm=8, retry_after=0.05)
    live = LiveMessage(reply, interval=0.01, initial=view(0))
    live.update(view(1))
    await asyncio.sleep(0.02)
    await live.finish(view(2))
    assert reply.rejected == 8
    assert reply.edits[-1][1] == "state 2"


async def test_the_final_edit_respects_the_platform_gap() -> None:
    reply = RecordingReply(min_gap=0.2)
    live = LiveMessage(reply, interval=0.2)
    live.update(view(1))
    await asyncio.sleep(0.01)
    await live.finish(view(2))
    assert [t for _, t in reply.edits] == ["state 1", "state 2"]
    assert reply.rejected == 0


class GoneReply(RecordingReply):
    """A message in a chat the bot was removed from."""

    async def edit(self, view: MessageView) -> None:
        self.rejected += 1
        raise Undeliverable("chat is gone", code="chat_not_found")


@pytest.mark.timeout(10)
async def test_a_refusal_for_good_is_not_retried() -> None:
    reply = GoneReply()
    live = LiveMessage(reply, interval=0.01, initial=view(0))
    await live.finish(view(2))
    assert reply.rejected == 1  # the final state was tried once, not for 15 minutes
    with pytest.raises(Undeliverable):
        await deliver(lambda: reply.edit(view(3)))
    assert reply.rejected == 2
