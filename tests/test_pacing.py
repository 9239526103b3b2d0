"""The pacer: every call of a chat under its budget, answers first, progress only with room.

In process, against recording chats that answer 429 over their budget exactly as the
platforms count it (arrivals in any window); nothing of the pacer is replaced.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from bot.chat import Reply
from bot.live import LiveMessage
from bot.pacing import Budget, Pace, Pacer, Priority
from bot.view import MessageView
from tests.support.recording_chat import RecordingChat

pytestmark = pytest.mark.slow  # budgets are spent and refilled in real time: ~7 s in all


def post(pacer: Pacer, chat: RecordingChat, priority: Priority, title: str) -> Any:
    return pacer.send(
        chat, priority, lambda: chat.post(MessageView(title)), what=title, adapter="test"
    )


async def test_waiting_calls_leave_by_priority_not_by_arrival() -> None:
    chat = RecordingChat(Budget(1, 0.2))
    pacer = Pacer()
    first = asyncio.ensure_future(post(pacer, chat, Priority.ACK, "ack 1"))
    await asyncio.sleep(0.02)  # ack 1 is out; the rest wait for the budget
    rest = [
        asyncio.ensure_future(post(pacer, chat, priority, title))
        for priority, title in [
            (Priority.PROGRESS, "edit"),
            (Priority.ACK, "ack 2"),
            (Priority.ANSWER, "answer"),
        ]
    ]
    await asyncio.gather(first, *rest)
    assert chat.titles() == ["ack 1", "answer", "ack 2", "edit"]
    assert chat.refused == 0


async def test_a_busy_group_answers_first_and_refuses_nothing() -> None:
    """Six jobs in a chat of 12 calls a window: 6 acks + 6 answers fill it; the live messages'
    progress and last views wait for the next window instead of pushing answers out."""
    chat = RecordingChat(Budget(12, 1.5), edit_interval=0.05)
    pacer = Pacer(patience=0.5)  # a window longer than an answer may wait: a "group"
    lives: list[LiveMessage] = []
    for n in range(6):
        reply: Reply = await post(pacer, chat, Priority.ACK, f"ack {n}")
        lives.append(
            LiveMessage(pacer, chat, reply, initial=MessageView(f"ack {n}"), adapter="test")
        )
    for step in range(5):
        for n, live in enumerate(lives):
            live.update(MessageView(f"job {n} at {step}"))
        await asyncio.sleep(0.05)
    await asyncio.gather(
        *(
            live.finish(MessageView(f"job {n} done"), MessageView(f"answer {n}"))
            for n, live in enumerate(lives)
        )
    )
    kinds = [(s.kind, s.title) for s in chat.sent]
    answers = [i for i, (kind, _) in enumerate(kinds) if kind == "post" and "answer" in _]
    edits = [i for i, (kind, _) in enumerate(kinds) if kind == "edit"]
    assert len(answers) == 6
    assert max(answers) < min(edits)  # no edit went before the last answer
    assert {title for kind, title in kinds if kind == "edit"} == {f"job {n} done" for n in range(6)}
    assert chat.refused == 0


async def test_a_quiet_chat_gets_its_progress() -> None:
    chat = RecordingChat(Budget(1, 0.05), edit_interval=0.05)
    pacer = Pacer()
    reply: Reply = await post(pacer, chat, Priority.ACK, "ack")
    live = LiveMessage(pacer, chat, reply, initial=MessageView("ack"), adapter="test")
    for step in range(10):
        live.update(MessageView(f"at {step}"))
        await asyncio.sleep(0.06)
    await live.finish(MessageView("done"), MessageView("answer"))
    assert len(chat.titles("edit")) >= 5
    assert chat.titles()[-2:] == ["done", "answer"]
    assert chat.refused == 0


class Shared(RecordingChat):
    """A chat of a platform with a budget for all chats together."""

    @property
    def pace(self) -> Pace:
        return Pace(self.name, Budget(100, 1.0), shared=Budget(3, 0.5))


async def test_a_budget_shared_by_every_chat_of_an_adapter_holds() -> None:
    chats = [Shared(name=f"chat {n}") for n in range(4)]
    pacer = Pacer()
    await asyncio.gather(
        *(post(pacer, chat, Priority.ANSWER, f"{chat.name} {k}") for chat in chats for k in (1, 2))
    )
    times = sorted(s.at for chat in chats for s in chat.sent)
    assert len(times) == 8
    # any four consecutive sends span at least the shared window
    assert all(later - earlier >= 0.5 for earlier, later in zip(times, times[3:], strict=False))


async def test_an_answer_survives_a_429_storm_and_a_cancelled_wait_is_dropped() -> None:
    chat = RecordingChat(Budget(1, 0.3), storm=3, retry_after=0.05)
    pacer = Pacer()
    answer = asyncio.ensure_future(post(pacer, chat, Priority.ANSWER, "answer"))
    dropped = asyncio.ensure_future(post(pacer, chat, Priority.PROGRESS, "stale"))
    await asyncio.sleep(0.01)
    dropped.cancel()
    await answer
    await asyncio.sleep(0.5)
    assert chat.titles() == ["answer"]
    assert chat.refused == 3
    await pacer.aclose()


async def test_a_conversation_without_a_pace_has_its_calls_one_at_a_time_by_priority() -> None:
    class Plain:
        """A conversation of an adapter that knows no flood limit (the console)."""

        edit_interval = 0.2

        def __init__(self, chat: RecordingChat) -> None:
            self.chat = chat
            self.in_flight = 0
            self.most = 0

        async def post(self, view: MessageView) -> Reply:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.05)
            self.in_flight -= 1
            return await self.chat.post(view)

    chat = RecordingChat()
    plain, pacer = Plain(chat), Pacer()
    sends = [
        pacer.send(
            plain, priority, partial(plain.post, MessageView(title)), what=title, adapter="test"
        )
        for priority, title in [
            (Priority.ACK, "ack"),
            (Priority.PROGRESS, "edit"),
            (Priority.ANSWER, "answer"),
        ]
    ]
    await asyncio.gather(*sends)
    assert chat.titles() == ["answer", "ack", "edit"]
    assert plain.most == 1


async def test_a_private_chat_with_several_jobs_still_gets_progress() -> None:
    chat = RecordingChat(Budget(1, 0.1), edit_interval=0.1)
    pacer = Pacer(patience=0.5)
    lives = []
    for n in range(3):
        reply: Reply = await post(pacer, chat, Priority.ACK, f"ack {n}")
        lives.append(
            LiveMessage(pacer, chat, reply, initial=MessageView(f"ack {n}"), adapter="test")
        )
    for step in range(6):
        for n, live in enumerate(lives):
            live.update(MessageView(f"job {n} at {step}"))
        await asyncio.sleep(0.15)
    edits_while_running = len(chat.titles("edit"))
    for live in lives:
        await live.close()
    assert edits_while_running >= 3
    assert chat.refused == 0
