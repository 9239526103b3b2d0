"""The live message against a recording chat that rate-limits like the real ones."""

import asyncio
import itertools
import logging
import time

import pytest

from bot.chat import Reply
from bot.live import LiveMessage
from bot.pacing import Budget, Pacer, Priority
from bot.view import MessageView
from tests.support.recording_chat import RecordingChat


def view(n: int) -> MessageView:
    return MessageView(f"state {n}")


async def started(chat: RecordingChat, pacer: Pacer, initial: MessageView | None) -> LiveMessage:
    """A live message whose acknowledgement went through the pacer, as the bot's do."""
    ack = initial or MessageView("ack")
    reply: Reply = await pacer.send(
        chat, Priority.ACK, lambda: chat.post(ack), what="ack", adapter="test"
    )
    return LiveMessage(pacer, chat, reply, initial=initial, adapter="test")


async def test_bursts_are_coalesced_to_the_newest_view_within_the_interval() -> None:
    chat = RecordingChat(edit_interval=0.3)
    live = await started(chat, Pacer(), view(0))
    began = time.monotonic()
    for n in range(1, 200):
        live.update(view(n))
        await asyncio.sleep(0.005)
    took = time.monotonic() - began
    await live.finish(view(999))
    edits = [s for s in chat.sent if s.kind == "edit"]
    assert edits[-1].title == "state 999"
    assert len(edits) <= took / 0.3 + 2  # one edit per 0.3 s of updates, plus the final one
    gaps = [b.at - a.at for a, b in itertools.pairwise(edits)]
    assert all(gap >= 0.29 for gap in gaps)


async def test_unchanged_text_is_not_sent() -> None:
    chat = RecordingChat(edit_interval=0.01)
    live = await started(chat, Pacer(), view(1))
    for _ in range(20):
        live.update(view(1))
        await asyncio.sleep(0.002)
    await live.finish(view(1))
    assert chat.titles("edit") == []


@pytest.mark.timeout(20)
async def test_rate_limit_storm_still_delivers_the_final_state_and_answer() -> None:
    chat = RecordingChat(edit_interval=0.01, retry_after=0.05)
    live = await started(chat, Pacer(), view(0))
    chat.storm = 8
    live.update(view(1))
    await asyncio.sleep(0.02)
    await live.finish(view(2), MessageView("answer"))
    assert chat.refused == 8
    assert chat.titles("edit")[-1] == "state 2"
    assert chat.titles("post")[-1] == "answer"


async def test_the_final_edit_respects_the_platform_gap_and_comes_before_the_answer() -> None:
    chat = RecordingChat(edit_interval=0.2, budget=Budget(1, 0.2))
    live = await started(chat, Pacer(), None)
    live.update(view(1))
    while chat.titles("edit") != ["state 1"]:
        await asyncio.sleep(0.01)
    await live.finish(view(2), MessageView("answer"))  # at once: the chat wants 0.2 s
    assert [(s.kind, s.title) for s in chat.sent][1:] == [
        ("edit", "state 1"),
        ("edit", "state 2"),
        ("post", "answer"),
    ]
    assert chat.refused == 0


@pytest.mark.timeout(10)
async def test_a_refusal_for_good_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    chat = RecordingChat(edit_interval=0.01)
    live = await started(chat, Pacer(), view(0))
    chat.gone = True
    with caplog.at_level(logging.ERROR):
        await live.finish(view(2), MessageView("answer"))
    assert chat.refused == 2  # the last state and the answer, each tried once
    assert "did not take the final answer" in caplog.text


async def test_closing_drops_the_waiting_edit() -> None:
    chat = RecordingChat(edit_interval=5.0)
    live = await started(chat, Pacer(), view(0))
    live.update(view(1))  # waits 5 s for the edit interval
    await live.close()
    live.update(view(2))
    await asyncio.sleep(0.05)
    assert chat.titles("edit") == []


class PostsOnlyChat(RecordingChat):
    """A chat whose messages cannot be edited (DingTalk's robot messages)."""

    @property
    def edits_in_place(self) -> bool:
        return False


async def test_where_messages_cannot_be_edited_only_the_answer_follows_the_ack() -> None:
    chat = PostsOnlyChat(edit_interval=0.0)
    pacer = Pacer()
    live = await started(chat, pacer, view(0))
    for n in range(1, 20):
        live.update(view(n))
        await asyncio.sleep(0.002)
    await live.finish(view(99), MessageView("answer"))
    assert [(s.kind, s.title) for s in chat.sent] == [("post", "state 0"), ("post", "answer")]
    # Without an answer to carry it, the last state is still delivered (the reply posts it).
    other = await started(chat, pacer, view(0))
    other.update(view(1))
    await other.finish(view(2))
    assert chat.titles("edit") == ["state 2"]
