"""Answers in the asker's language, through the real bot and the real chat SDKs.

Telegram: ``mirror-bot run`` with the real python-telegram-bot against the local Bot API
server and the lab's registries; two people in one group, one client in Chinese and one in
English, send the same command. Slack: the adapter's real bolt app and Web API client against
the local Slack, whose ``users.info`` says the user's locale. The choice made with ``/mirror
lang`` is kept in the real SQLite store across a restart of the bot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_bolt.request.async_request import AsyncBoltRequest

import lab as lab_module
from adapters.slack import SlackAdapter, SlackSettings
from bot.app import MirrorBot
from bot.chat import Incoming
from bot.i18n import CHINESE
from tests.support.cli import bot_env
from tests.support.fake_slack import BOT_USER_ID, FakeSlack
from tests.support.fake_telegram import Chat, FakeTelegram
from tests.test_app import PLATFORM, Thread, finish, running_bot, say, settings_for
from tests.test_slack import APP_TOKEN, BOT_TOKEN, USER, _slash_payload
from tests.test_telegram import TOKEN, final_answer, polling
from tests.test_telegram import running_bot as running_program

TEAM = Chat(-100888, "supergroup", "team")
LI, SAM = 6001, 6002  # Li's Telegram speaks Simplified Chinese, Sam's English


# -- the stored choice ------------------------------------------------------------------------


async def test_mirror_lang_zh_is_kept_across_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    async with running_bot(settings) as bot:
        chosen = await say(bot, "dana", "c1", "/mirror lang zh")
        before = await say(bot, "erin", "c1", "/status")  # someone else: still English
    async with running_bot(settings) as bot:
        after = await say(bot, "dana", "c2", "/status")
        help_text = await say(bot, "dana", "c2", "/help")
        back = await say(bot, "dana", "c2", "/mirror lang auto")
        english = await say(bot, "dana", "c2", "/status")
    assert chosen.texts == ["好的，之后我会用简体中文回复你。"]
    assert before.texts[0].startswith("No jobs in this chat yet")
    assert after.texts[0].startswith("本聊天还没有任务")
    assert "把镜像复制到你的团队能访问的镜像仓库" in help_text.texts[0]
    assert (
        "/mirror gcr.io/google-samples/microservices-demo/emailservice:v0.3.5"
        in (help_text.texts[0])
    )  # the examples are commands: never translated
    assert back.texts == ["I will answer you in your client's language again."]
    assert english.texts[0].startswith("No jobs in this chat yet")


async def test_the_operator_default_applies_unless_a_person_chose(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998", mirror_language=CHINESE)
    async with running_bot(settings) as bot:
        everyone = await say(bot, "fay", "c1", "/history")
        await say(bot, "gus", "c1", "/mirror lang en")
        chooser = await say(bot, "gus", "c1", "/history")
    assert everyone.texts == ["本聊天还没有同步过镜像。"]
    assert chooser.texts == ["Nothing mirrored from this chat yet."]


async def test_a_failed_copy_is_explained_in_the_requesters_language(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """The sentence comes from mirror/ (the registry engine's miss, the nearest tags): it
    reaches the thread translated, with the references in it untouched."""
    settings = settings_for(tmp_path, lab.target, lab.source)
    missing_tag = f"{lab.source}/library/hello:9.9"  # answered with the nearest tags
    missing_repository = f"{lab.source}/library/nothing-here:1.0"  # the engine's own sentence
    command = f"/mirror {missing_tag} {missing_repository}"
    async with running_bot(settings) as bot:
        thread = Thread()
        await bot.handle(Incoming(PLATFORM, "li", "li", "c1", command, language="zh-CN"), thread)
        await finish(bot)
    final = thread.texts[-1]
    assert "没有同步任何镜像" in final, final
    assert f"`{missing_tag}` 不存在；最接近的有：" in final, final
    assert f"在 `{lab.source}` 中找不到 `{missing_repository}`：请检查名称和标签。" in final, final


# -- Slack ------------------------------------------------------------------------------------


@pytest.fixture
def local_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack(BOT_TOKEN, APP_TOKEN).start()
    yield slack
    slack.stop()


@pytest.fixture
async def slack_adapter(local_slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    settings = SlackSettings(
        bot_token=SecretStr(BOT_TOKEN), app_token=SecretStr(APP_TOKEN), api_url=local_slack.api_url
    )
    adapter = settings.build()
    adapter.bot_user_id = BOT_USER_ID
    yield adapter


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[MirrorBot]:
    async with running_bot(settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")) as bot:
        yield bot


async def command(
    adapter: SlackAdapter, bot: MirrorBot, local_slack: FakeSlack, channel: str, text: str
) -> None:
    """A slash command through the adapter's bolt app, until the bot's answer is posted (the
    bot's own pacing tasks live on, so waiting for every task would never end)."""
    posted = len(local_slack.of("chat.postMessage", channel))
    app = adapter._build_app(bot.handle)
    request = AsyncBoltRequest(body=_slash_payload(channel, text), mode="socket_mode")
    assert (await app.async_dispatch(request)).status == 200
    async with asyncio.timeout(30):
        while len(local_slack.of("chat.postMessage", channel)) == posted:
            await asyncio.sleep(0.02)


async def test_a_slack_user_whose_locale_is_zh_cn_is_answered_in_chinese(
    slack_adapter: SlackAdapter, local_slack: FakeSlack, bot: MirrorBot
) -> None:
    local_slack.locales[USER] = "zh-CN"
    await command(slack_adapter, bot, local_slack, "C0LANG001", "status")
    await command(slack_adapter, bot, local_slack, "C0LANG001", "nginx:1.25 --platform linux")
    status, refusal = local_slack.of("chat.postMessage", "C0LANG001")
    assert "本聊天还没有任务" in status.params["text"]
    assert "`linux` 不是平台：请使用 os/arch[/variant]" in refusal.params["text"]
    asked = local_slack.of("users.info")
    assert len(asked) == 1  # asked once, then remembered
    assert asked[0].params["user"] == USER


async def test_the_slack_adapters_own_notice_is_in_the_askers_language_too(
    slack_adapter: SlackAdapter, local_slack: FakeSlack, bot: MirrorBot
) -> None:
    """A channel the bot may not post in: the adapter says so itself while it delivers the
    answer, to each asker in theirs."""
    local_slack.locales[USER] = "zh-CN"
    local_slack.locales["U0ENGLISH"] = "en-US"
    english = _slash_payload("C0CLOSED1", "status") | {"user_id": "U0ENGLISH"}
    app = slack_adapter._build_app(bot.handle)
    local_slack.closed_channels.add("C0CLOSED1")
    hook = f"{local_slack.url}/hooks/commands/T/1/x"
    for body in (english | {"response_url": hook}, _slash_payload("C0CLOSED1", "status", hook)):
        request = AsyncBoltRequest(body=body, mode="socket_mode")
        assert (await app.async_dispatch(request)).status == 200
    async with asyncio.timeout(30):
        while len(local_slack.of("response_url")) < 2:
            await asyncio.sleep(0.02)
    notices = sorted(str(c.params.get("text")) for c in local_slack.of("response_url"))
    assert notices[0].startswith("I cannot post in this channel")
    assert notices[1].startswith("我无法在这个频道发消息")


async def test_a_slack_locale_that_cannot_be_read_falls_back_to_english(
    slack_adapter: SlackAdapter, local_slack: FakeSlack, bot: MirrorBot
) -> None:
    # This user is not in users.info: Slack answers user_not_found.
    await command(slack_adapter, bot, local_slack, "C0LANG002", "status")
    [status] = local_slack.of("chat.postMessage", "C0LANG002")
    assert "No jobs in this chat yet" in status.params["text"]
    assert [c.result["ok"] for c in local_slack.of("users.info")] == [False]


# -- Telegram ---------------------------------------------------------------------------------


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(TOKEN).start()
    yield fake
    await fake.close()


async def test_two_people_in_one_telegram_group_each_get_their_own_language(
    lab: lab_module.Lab, telegram: FakeTelegram, tmp_path: Path
) -> None:
    env = bot_env(
        lab,
        tmp_path / "mirror.db",
        MIRROR_ENGINE="registry",
        MIRROR_TARGET=f"{lab.target}/lang{uuid.uuid4().hex[:8]}",
        MIRROR_ALLOWED_USERS=f"telegram:{TEAM.id}",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram.url,
        NO_PROXY="127.0.0.1,localhost",
    )
    command = f"/mirror {lab.source}/library/hello:1.0"
    async with running_program(env, tmp_path / "bot.log"):
        await polling(telegram)
        li = telegram.send(TEAM, LI, command, language="zh-hans")
        li_final = await telegram.wait_for(lambda: final_answer(telegram, li))
        sam = telegram.send(TEAM, SAM, command, language="en")
        sam_final = await telegram.wait_for(lambda: final_answer(telegram, sam))
        hant = telegram.send(TEAM, 6003, "/status", language="zh-TW")
        hant_replies = await telegram.wait_for(
            lambda: r if len(r := telegram.replies_to(hant)) == 2 else None
        )

    li_ack, sam_ack = telegram.replies_to(li)[0], telegram.replies_to(sam)[0]
    assert "正在同步 1 个镜像" in li_ack.text
    assert "mirroring 1 image" in sam_ack.text
    assert "完成：1 个镜像已就绪" in li_final.text
    assert "done: 1 image ready" in sam_final.text
    # What people paste is the same in both: the commands in the code block.
    pull = [line for line in li_final.text.splitlines() if "docker pull" in line]
    assert pull and all(line in sam_final.text for line in pull)
    # A Traditional Chinese client gets English, and is told why, once.
    assert "Latest jobs in this chat" in hant_replies[0].text
    assert "Traditional Chinese" in hant_replies[1].text
