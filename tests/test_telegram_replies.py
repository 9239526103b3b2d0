"""The adapter in process, against the local Bot API server: which messages reach the bot,
and how Telegram's answers to an edit become what ``bot.live`` expects (RateLimited, nothing,
an error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Update

from adapters.telegram import TelegramAdapter
from bot.chat import Conversation, Incoming, RateLimited, Undeliverable
from bot.view import MessageView, Tone
from tests.support.fake_telegram import BOT_USERNAME, Chat, FakeTelegram

TOKEN = "654321:in-process-token"

# PTB 22 itself warns, building RetryAfter, that its int form goes away; the adapter takes both.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(TOKEN).start()
    yield fake
    await fake.close()


@pytest.fixture
async def adapter(telegram: FakeTelegram) -> AsyncIterator[TelegramAdapter]:
    adapter = TelegramAdapter(TOKEN, api_url=telegram.url + "/")  # a trailing slash is fine
    async with adapter._app.bot:
        yield adapter


async def test_an_unchanged_edit_is_not_an_error(
    adapter: TelegramAdapter, telegram: FakeTelegram
) -> None:
    opened = await adapter.reopen("42:0:7:42")
    assert opened is not None
    conversation, _ = opened
    reply = await conversation.post(MessageView("Job j: mirroring 1 image", Tone.WORKING))
    view = MessageView("Job j: done", Tone.SUCCESS)
    await reply.edit(view)
    await reply.edit(view)  # Telegram: "message is not modified"; the text is there: fine
    assert [c.status for c in telegram.calls if c.method == "editMessageText"] == [200, 400]
    [post] = telegram.ok("sendMessage")
    assert post.reply_to == 7 and post.params["parse_mode"] == "HTML"


async def test_429_becomes_rate_limited_with_the_wait_telegram_asked_for(
    adapter: TelegramAdapter, telegram: FakeTelegram
) -> None:
    opened = await adapter.reopen("-1005:0:9:42")
    assert opened is not None
    conversation, _ = opened
    assert conversation.edit_interval == 3.0  # a group
    reply = await conversation.post(MessageView("Job j"))
    telegram.rate_limit("editMessageText", 1, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await reply.edit(MessageView("Job j: copying"))
    assert caught.value.retry_after == 7.0


async def test_a_long_answer_hit_by_429_midway_is_sent_once_in_order(
    adapter: TelegramAdapter, telegram: FakeTelegram
) -> None:
    opened = await adapter.reopen("42:0:7:42")
    assert opened is not None
    conversation, _ = opened
    code = tuple(f"docker pull registry.example.com/team/image-{n}:{'v' * 150}" for n in range(60))
    telegram.rate_limit("sendMessage", 1, retry_after=1, after=1)
    reply = await conversation.post(MessageView("Job j done: 60 images ready", code=code))
    sent = telegram.ok("sendMessage")
    assert len(sent) > 2
    assert reply.ref == f"42:{sent[0].message_id}:7:42"
    assert [c.status for c in telegram.calls if c.method == "sendMessage"][:3] == [200, 429, 200]
    pulls = [line for c in sent for line in c.text.split("\n") if "docker pull" in line]
    assert [line.split(":")[0].rsplit("-", 1)[1] for line in pulls] == [str(n) for n in range(60)]


async def test_other_bad_requests_are_undeliverable(adapter: TelegramAdapter) -> None:
    """A message that does not exist cannot be edited however often we try."""
    opened = await adapter.reopen("42:999:7:42")
    assert opened is not None
    _, reply = opened
    assert reply.ref == "42:999:7:42"
    with pytest.raises(Undeliverable, match="Telegram refused"):
        await reply.edit(MessageView("Job j"))


@pytest.mark.parametrize("ref", ["", "42", "42:1:2", "a:b:c:d", "42:1:2:3:4"])
async def test_a_ref_from_elsewhere_is_not_reopened(adapter: TelegramAdapter, ref: str) -> None:
    assert await adapter.reopen(ref) is None


async def test_in_a_group_only_our_commands_reach_the_bot(telegram: FakeTelegram) -> None:
    """Group chatter and other bots' commands are left alone; a private chat is all ours."""
    adapter = TelegramAdapter(TOKEN, api_url=telegram.url)
    seen: list[Incoming] = []

    async def record(incoming: Incoming, conversation: Conversation) -> None:
        seen.append(incoming)

    adapter._handler = record  # what serve() sets before the first update
    group, private = Chat(-100321, "supergroup", "team"), Chat(42)
    messages = [
        (group, "good morning"),
        (group, "/mirror@OtherBot nginx"),
        (group, "/weather"),
        (group, f"/status@{BOT_USERNAME}"),
        (group, "/history"),
        (private, "hello"),
    ]
    async with adapter._app:  # getMe: the bot learns its own name
        for chat, text in messages:
            update = Update.de_json(telegram.message(chat, 7, text), adapter._app.bot)
            await adapter._app.process_update(update)
    assert [(i.chat_id, i.text, i.is_group) for i in seen] == [
        ("-100321", f"/status@{BOT_USERNAME}", True),
        ("-100321", "/history", True),
        ("42", "hello", False),
    ]
    assert all(i.platform == "telegram" and i.closed_by_default for i in seen)
    assert {i.bot_username for i in seen} == {BOT_USERNAME}
