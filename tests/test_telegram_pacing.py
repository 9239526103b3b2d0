"""Busy chats through the real Telegram adapter, against a Bot API server that enforces
Telegram's flood limits: thirty requests at once, twenty of them in two groups, all answered,
and not one call refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import lab as lab_module
from tests.support.busy_chats import allowed_users, ask_all
from tests.support.cli import bot_env, run_mirror
from tests.support.fake_telegram import FakeTelegram
from tests.test_telegram import TOKEN, polling, running_bot


@pytest.mark.timeout(400)
async def test_thirty_requests_at_once_are_all_answered_and_nothing_is_refused(
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
    image = f"{lab.source}/library/hello:1.0"
    assert run_mirror(env, image).returncode == 0  # the cheap path: already mirrored
    try:
        async with running_bot(env, tmp_path / "bot.log"):
            await polling(telegram)
            played = ask_all(telegram, image)
            await telegram.wait_for(lambda: not played.unanswered(telegram) or None, 300)
    finally:
        await telegram.close()

    assert played.unanswered(telegram) == []
    for request, (chat, _) in played.requests.items():
        answer = played.final_answer(telegram, request)
        assert answer is not None and answer.chat_id == chat
        assert "docker pull" in answer.text
    assert telegram.refused == 0
    assert [c for c in telegram.calls if c.status == 429] == []
