"""How each adapter names a chat API's failures for ``bot.delivery``, in process against the
local Slack and Telegram servers: 429 -> RateLimited, down or 5xx -> ChatUnavailable, a
refusal for good -> Undeliverable; and start-up waits for an API that is down, not for one
that refuses the token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import lab as lab_module
from adapters.slack import SlackAdapter, SlackConversation
from adapters.telegram import TelegramAdapter
from bot.chat import ChatUnavailable, ConfigurationError, RateLimited, Undeliverable
from bot.view import MessageView
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import FakeTelegram

TOKEN = "654321:failures-token"
SLACK_TOKEN = "xoxb-failures"
VIEW = MessageView("Job j: mirroring 1 image")

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(TOKEN).start()
    yield fake
    await fake.close()


async def test_telegram_server_errors_are_unavailable(telegram: FakeTelegram) -> None:
    adapter = TelegramAdapter(TOKEN, api_url=telegram.url)
    async with adapter._app.bot:
        opened = await adapter.reopen("42:0:7:42")
        assert opened is not None
        conversation, _ = opened
        telegram.outage("sendMessage", 1, status=502)
        with pytest.raises(ChatUnavailable, match="Telegram did not answer"):
            await conversation.post(VIEW)
        telegram.outage("sendMessage", 1, status=500)
        with pytest.raises(ChatUnavailable):
            await conversation.post(VIEW)
        reply = await conversation.post(VIEW)  # the outage is over
        telegram.rate_limit("editMessageText", 1, retry_after=3)
        with pytest.raises(RateLimited):
            await reply.edit(MessageView("Job j: copying"))
    assert [c.status for c in telegram.calls if c.method == "sendMessage"] == [502, 500, 200]


async def test_telegram_unreachable_is_unavailable() -> None:
    adapter = TelegramAdapter(TOKEN, api_url=f"http://127.0.0.1:{lab_module.free_port()}")
    opened = await adapter.reopen("42:0:7:42")
    assert opened is not None
    conversation, _ = opened
    with pytest.raises(ChatUnavailable):
        await conversation.post(VIEW)


@pytest.mark.slow  # waits out the API's outage in real time
async def test_telegram_start_up_waits_for_the_api(telegram: FakeTelegram) -> None:
    telegram.outage("getMe", 2, status=502)
    adapter = TelegramAdapter(TOKEN, api_url=telegram.url)
    await adapter._initialize()
    await adapter._app.shutdown()
    assert [c.status for c in telegram.calls if c.method == "getMe"] == [502, 502, 200]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(SLACK_TOKEN).start()
    yield fake
    fake.stop()


def slack_adapter(api_url: str, token: str = SLACK_TOKEN) -> SlackAdapter:
    return SlackAdapter(bot_token=token, signing_secret="s", api_url=api_url)


async def test_slack_failures_in_the_ports_terms(slack: FakeSlack) -> None:
    adapter = slack_adapter(slack.api_url)
    conversation = SlackConversation(adapter._api, "C0FAIL001", None, "U0ALICE01")
    slack.outage = 1
    with pytest.raises(ChatUnavailable, match="Slack did not answer"):
        await conversation.post(VIEW)
    reply = await conversation.post(VIEW)
    slack.update_429 = 1
    with pytest.raises(RateLimited):
        await reply.edit(MessageView("Job j: copying"))
    slack.closed_channels.add("C0CLOSED1")
    closed = SlackConversation(adapter._api, "C0CLOSED1", None, "U0ALICE01")
    with pytest.raises(Undeliverable, match="not_in_channel"):
        await closed.post(VIEW)
    # one call each: the client retries nothing by itself, bot.delivery does
    assert [c.status for c in slack.of("chat.postMessage")] == [503, 200, 200]


async def test_slack_unreachable_is_unavailable() -> None:
    adapter = slack_adapter(f"http://127.0.0.1:{lab_module.free_port()}/api/")
    conversation = SlackConversation(adapter._api, "C0FAIL001", None, "U0ALICE01")
    with pytest.raises(ChatUnavailable):
        await conversation.post(VIEW)


async def test_slack_start_up_does_not_retry_a_refused_token(slack: FakeSlack) -> None:
    adapter = slack_adapter(slack.api_url, token="xoxb-wrong")
    with pytest.raises(ConfigurationError, match="invalid_auth"):
        await adapter._who_am_i()
    assert len(slack.of("auth.test")) == 1
