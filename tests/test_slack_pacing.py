"""A busy Slack channel, in process: three jobs' acknowledgements, progress, last views and
answers through the real slack_sdk client and the pacer, against a local Slack that refuses
more than one message a second per channel. Everything arrives; nothing is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from adapters.slack import SlackAdapter, SlackConversation
from bot.chat import Reply
from bot.live import LiveMessage
from bot.pacing import Pacer, Priority
from bot.view import MessageView
from tests.support.fake_slack import FakeSlack

TOKEN = "xoxb-pacing"
CHANNEL = "C0BUSY001"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(TOKEN, enforce=True).start()
    yield fake
    fake.stop()


async def job(pacer: Pacer, conversation: SlackConversation, n: int) -> None:
    ack = MessageView(f"Job {n}: mirroring 1 image")
    reply: Reply = await pacer.send(
        conversation, Priority.ACK, lambda: conversation.post(ack), what="ack", adapter="slack"
    )
    live = LiveMessage(pacer, conversation, reply, initial=ack, adapter="slack")
    for step in range(3):
        live.update(MessageView(f"Job {n}: copying {step}"))
        await asyncio.sleep(0.4)
    await live.finish(MessageView(f"Job {n}: done"), MessageView(f"Job {n} done: ready"))


@pytest.mark.slow  # paces thirty answers through a one-a-second channel in real time
@pytest.mark.timeout(60)
async def test_a_busy_channel_gets_every_answer_and_no_429(slack: FakeSlack) -> None:
    adapter = SlackAdapter(bot_token=TOKEN, signing_secret="s", api_url=slack.api_url)
    pacer = Pacer()
    conversations = [SlackConversation(adapter._api, CHANNEL, None, "U0ALICE01") for _ in range(3)]
    await asyncio.gather(*(job(pacer, c, n) for n, c in enumerate(conversations)))
    texts = [str(c.params["text"]) for c in slack.posts(CHANNEL)]
    for n in range(3):
        assert len([t for t in texts if f"Job {n} done: ready" in t]) == 1
    last_views = {str(c.params["ts"]): str(c.params["text"]) for c in slack.updates(CHANNEL)}
    assert len(last_views) == 3
    assert all(view.endswith("done*") for view in last_views.values()), last_views
    assert slack.refused == 0
    assert all(c.status == 200 for c in slack.calls)
