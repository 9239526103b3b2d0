"""Busy chats through the real Telegram adapter, against a Bot API server that enforces
Telegram's flood limits: thirty requests at once, twenty of them in two groups, the image
copied for real. Every requester gets a reply to their own message with their pull command,
nothing is refused, and every live message settles within the group's first minute of budget
(a group's calls are counted, never timed)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import lab as lab_module
from tests.support.busy_chats import GROUPS, allowed_users, ask_all
from tests.support.cli import bot_env
from tests.support.fake_telegram import FLOOD_LIMITS, FakeTelegram
from tests.test_telegram import TOKEN, polling, running_bot


@pytest.mark.timeout(400)
async def test_thirty_requests_at_once_all_settle_within_each_groups_budget(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    telegram = await FakeTelegram(TOKEN, enforce=True).start()
    env = bot_env(
        lab,
        tmp_path / "mirror.db",
        MIRROR_ENGINE="registry",
        MIRROR_TARGET=f"{lab.target}/busy{uuid.uuid4().hex[:8]}",
        MIRROR_ALLOWED_USERS=allowed_users(),
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram.url,
        NO_PROXY="127.0.0.1,localhost",
    )
    image = f"{lab.source}/library/hello:1.0"  # not mirrored yet: the first jobs copy it
    try:
        async with running_bot(env, tmp_path / "bot.log"):
            await polling(telegram)
            played = ask_all(telegram, image)

            def settled() -> bool | None:
                done = not played.unanswered(telegram) and not played.unsettled(telegram)
                return done or None

            await telegram.wait_for(settled, 300)
    finally:
        await telegram.close()

    for request, (chat, _) in played.requests.items():
        answer = played.final_answer(telegram, request)
        assert answer is not None and answer.chat_id == chat
        assert "docker pull" in answer.text
        named = played.first_named(telegram, request)  # acknowledged before the answer
        assert named is not None and named.method == "sendMessage" and named.at <= answer.at
    group_budget, _minute = FLOOD_LIMITS["group"]
    for group in GROUPS:  # all of it fits the group's first minute: nothing waits for the next
        calls = played.calls_in(telegram, group.id)
        assert len(calls) <= group_budget, [c.text[:40] for c in calls]
    assert played.unsettled(telegram) == []
    assert telegram.refused == 0
    assert [c for c in telegram.calls if c.status == 429] == []
