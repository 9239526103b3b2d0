"""The Slack adapter end to end: ``mirror-bot run`` against a local Slack and the real lab.

The bot is the real program (slack-bolt, slack_sdk, the job service, the Docker engine); only
Slack is replaced, by ``tests/support/fake_slack.py``, which speaks the Web API and Socket
Mode on 127.0.0.1. HTTP-mode requests are signed with the signing secret exactly as Slack
signs them.

The adapter's own rules (which events it answers, once, in which thread) are tested first, in
process: the adapter's real slack-bolt app gets each event through ``async_dispatch`` and
answers through the real Web API client, against the same local Slack, in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

import lab as lab_module
from adapters.slack import SlackAdapter, SlackSettings, parse_ref
from adapters.slack_text import command_text, escape, slash_text, to_mrkdwn
from bot.chat import Conversation, Incoming
from bot.files import MAX_FILE_BYTES, FileRefused, file_text
from bot.view import Bar, MessageView, Row, Tone
from tests.support.cli import MIRROR_BOT, bot_env
from tests.support.fake_slack import BOT_USER_ID, TEAM_ID, Call, FakeSlack, block_actions
from tests.support.throttle import ThrottledRelay

BOT_TOKEN = "xoxb-1234-test-bot-token-4711"
APP_TOKEN = "xapp-1-A0TEST-test-app-token-4711"
SIGNING_SECRET = "f00dfeed8e8e8e8e-test-signing-secret"
USER = "U0ALICE01"
BOB = "U0BOB0001"


# -- the adapter's rules, in process ----------------------------------------------------------


@dataclass
class Recorder:
    """The bot's side of the port: what it was handed, answered with one post each."""

    seen: list[Incoming]

    async def __call__(self, incoming: Incoming, conversation: Conversation) -> None:
        self.seen.append(incoming)
        await conversation.post(MessageView(f"answer {len(self.seen)}"))


@pytest.fixture(scope="module")
def local_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack(BOT_TOKEN, APP_TOKEN).start()
    yield slack
    slack.stop()


@pytest.fixture
async def adapter(local_slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    """The adapter in Socket Mode (bolt checks no signatures there), on the local Slack."""
    settings = SlackSettings(
        bot_token=SecretStr(BOT_TOKEN),
        app_token=SecretStr(APP_TOKEN),
        api_url=local_slack.api_url,
    )
    adapter = settings.build()
    adapter.bot_user_id = BOT_USER_ID  # what serving learns from auth.test
    local_slack.calls.clear()
    yield adapter


@pytest.fixture
def app(adapter: SlackAdapter) -> tuple[AsyncApp, Recorder]:
    """The adapter's real bolt app, handing commands to a recorder."""
    recorder = Recorder([])
    return adapter._build_app(recorder), recorder


async def dispatch(app: AsyncApp, *bodies: dict[str, Any]) -> None:
    """Hand Slack's envelopes to the app one by one, then wait for everything they started:
    bolt runs each listener in a task of its own, and the adapter each command in another."""
    before = asyncio.all_tasks()
    for body in bodies:
        response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
        assert response.status == 200
    while started := asyncio.all_tasks() - before:
        await asyncio.gather(*started)


def callback(payload: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "team_id": TEAM_ID,
        "api_app_id": "A0TEST",
        "type": "event_callback",
        "event_id": event_id or f"Ev{random.randrange(10**9):09d}",
        "event_time": 1690000000,
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        "event": payload,
    }


def mention_of(text: str, channel: str = "C0RULES01", **extra: str) -> dict[str, Any]:
    ts = f"1690000000.{random.randrange(10**6):06d}"
    return {"type": "app_mention", "user": USER, "text": text, "ts": ts, "channel": channel} | (
        extra
    )


def dm_of(text: str, channel: str = "D0RULES01", **extra: str) -> dict[str, Any]:
    ts = f"1690000001.{random.randrange(10**6):06d}"
    message = {"type": "message", "channel_type": "im", "user": USER, "text": text, "ts": ts}
    return message | {"channel": channel} | extra


async def test_a_resent_event_runs_once(
    app: tuple[AsyncApp, Recorder], local_slack: FakeSlack
) -> None:
    """Slack sends an event again when it thinks the first was not acknowledged in time."""
    bolt, recorder = app
    mention = callback(mention_of(f"<@{BOT_USER_ID}> status"), event_id="Ev0RESENT1")
    dm = callback(dm_of("history"), event_id="Ev0RESENT2")
    await dispatch(bolt, mention, mention, dm, dm)
    assert [i.text for i in recorder.seen] == ["status", "history"]
    assert len(local_slack.of("chat.postMessage")) == 2


async def test_the_bots_own_messages_and_other_chatter_are_ignored(
    app: tuple[AsyncApp, Recorder], local_slack: FakeSlack
) -> None:
    bolt, recorder = app
    await dispatch(
        bolt,
        callback(mention_of(f"<@{BOT_USER_ID}> help", bot_id="BB0T00001")),
        callback(dm_of("help", bot_id="BB0T00001")),  # our own answer, echoed as an event
        callback(mention_of(f"<@{BOT_USER_ID}> help", bot_id="B0THER001")),  # another bot
        callback(dm_of("help", bot_id="B0THER001")),
        callback(dm_of("help", subtype="message_changed")),  # an edit, not a new message
        callback(dm_of("help", channel="C0RULES01", channel_type="channel")),  # channel talk
        callback(dm_of("status")),  # the one to answer
    )
    assert [(i.text, i.chat_id, i.is_group) for i in recorder.seen] == [
        ("status", "D0RULES01", False)
    ]
    [answer] = local_slack.of("chat.postMessage")
    assert answer.params["channel"] == "D0RULES01" and "answer 1" in answer.params["text"]


async def test_each_kind_of_request_is_answered_in_its_own_thread(
    app: tuple[AsyncApp, Recorder], local_slack: FakeSlack
) -> None:
    bolt, recorder = app
    top = mention_of(f"<@{BOT_USER_ID}> help", channel="C0TOP0001")
    threaded = mention_of(f"<@{BOT_USER_ID}> help", channel="C0THR0001", thread_ts="1.000001")
    dm_top = dm_of("help", channel="D0TOP0001")
    dm_threaded = dm_of("help", channel="D0THR0001", thread_ts="1.000002")
    await dispatch(bolt, *(callback(e) for e in (top, threaded, dm_top, dm_threaded)))
    assert len(recorder.seen) == 4

    def thread_of(channel: str) -> str | None:
        [post] = local_slack.of("chat.postMessage", channel)
        return post.params.get("thread_ts")

    assert thread_of("C0TOP0001") == top["ts"]  # a mention starts a thread under itself
    assert thread_of("C0THR0001") == "1.000001"  # ... or answers in the one it is in
    assert thread_of("D0TOP0001") is None  # a DM is answered in the DM
    assert thread_of("D0THR0001") == "1.000002"  # ... or in its thread there


async def test_a_slash_command_opens_a_thread_with_its_first_answer(
    adapter: SlackAdapter, local_slack: FakeSlack
) -> None:
    conversations: list[Conversation] = []

    async def keep(incoming: Incoming, conversation: Conversation) -> None:
        conversations.append(conversation)

    await dispatch(adapter._build_app(keep), _slash_payload("C0SLASH02", "status"))
    [conversation] = conversations
    first = await conversation.post(MessageView("Job j: mirroring 1 image"))
    await conversation.post(MessageView("Job j: done"))
    ack, final = local_slack.of("chat.postMessage", "C0SLASH02")
    assert ack.params.get("thread_ts") is None  # the acknowledgement opens the thread ...
    assert final.params["thread_ts"] == ts_of(ack)  # ... and what follows goes into it
    # After a restart, the acknowledgement is edited and answers go to its thread.
    assert first.ref == f"C0SLASH02:{ts_of(ack)}:{ts_of(ack)}:{USER}"


# -- the bot process ---------------------------------------------------------------------------


@dataclass
class RunningBot:
    slack: FakeSlack
    process: subprocess.Popen[bytes]
    log: Path
    port: int
    slow_source: str


def _wait_listening(bot: RunningBot) -> None:
    while True:
        if bot.process.poll() is not None:
            raise AssertionError("the bot exited:\n" + bot.log.read_text())
        try:
            socket.create_connection(("127.0.0.1", bot.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def start_bot(lab: lab_module.Lab, slack: FakeSlack, relay: str, db: Path, log: Path) -> RunningBot:
    """``mirror-bot run`` with the lab's settings; Socket Mode when ``slack`` has an app token."""
    port = lab_module.free_port()
    extra = {"SLACK_APP_TOKEN": slack.app_token} if slack.app_token else {}
    lab_env = lab.env()
    env = bot_env(
        lab,
        db,
        MIRROR_ENGINE="docker",
        MIRROR_ALLOWED_SOURCES=f"{lab_env['MIRROR_ALLOWED_SOURCES']},{relay}",
        MIRROR_INSECURE_REGISTRIES=f"{lab_env['MIRROR_INSECURE_REGISTRIES']},{relay}",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_PORT=str(port),
        SLACK_API_URL=slack.api_url,
        **extra,
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [MIRROR_BOT, "run"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    bot = RunningBot(slack, process, log, port, relay)
    if slack.app_token:
        slack.wait_for(slack.connected)
    else:
        _wait_listening(bot)
    return bot


def stop_bot(bot: RunningBot) -> None:
    bot.process.terminate()
    bot.process.wait(timeout=60)


def assert_clean_log(log: Path) -> None:
    text = log.read_text()
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert secret not in text
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def relay(lab: lab_module.Lab) -> Iterator[str]:
    """The lab's source registry behind a 1 MB/s relay: a copy lasts long enough to be seen."""
    relay = ThrottledRelay(lab.source, 1_000_000).start()
    try:
        yield relay.address
    finally:
        relay.stop()


@pytest.fixture(scope="module")
def bots(
    lab: lab_module.Lab, relay: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningBot]]:
    """One bot in HTTP mode and one in Socket Mode, each with its own fake Slack and database."""
    root = tmp_path_factory.mktemp("slack")
    fakes = {
        "http": FakeSlack(BOT_TOKEN).start(),
        "socket": FakeSlack(BOT_TOKEN, APP_TOKEN).start(),
    }
    running: dict[str, RunningBot] = {}
    try:
        for mode, slack in fakes.items():
            running[mode] = start_bot(lab, slack, relay, root / f"{mode}.db", root / f"{mode}.log")
        yield running
    finally:
        for bot in running.values():
            stop_bot(bot)
        for slack in fakes.values():
            slack.stop()
    for mode in fakes:
        assert_clean_log(root / f"{mode}.log")


# -- what Slack sends --------------------------------------------------------------------------


def _post(bot: RunningBot, body: str, content_type: str, secret: str = SIGNING_SECRET) -> int:
    return _request(bot, body, content_type, secret)[0]


def _request(
    bot: RunningBot, body: str, content_type: str, secret: str = SIGNING_SECRET
) -> tuple[int, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{bot.port}/slack/events",
        data=body.encode(),
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _slash_payload(channel: str, text: str, response_url: str = "") -> dict[str, str]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "example",
        "channel_id": channel,
        "channel_name": "ops",
        "user_id": USER,
        "user_name": "alice",
        "command": "/mirror",
        "text": text,
        "api_app_id": "A0TEST",
        "response_url": response_url or "https://hooks.slack.com/commands/T0TEAM001/1/x",
        "trigger_id": "1.2.3",
    }


def slash(bot: RunningBot, channel: str, text: str, secret: str = SIGNING_SECRET) -> int:
    response_url = f"{bot.slack.url}/hooks/commands/{TEAM_ID}/1/x"
    body = urllib.parse.urlencode(_slash_payload(channel, text, response_url))
    return _post(bot, body, "application/x-www-form-urlencoded", secret)


def event(bot: RunningBot, payload: dict[str, Any]) -> int:
    body = {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": "A0TEST",
        "type": "event_callback",
        "event_id": f"Ev{random.randrange(10**9):09d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        "event": payload,
    }
    return _post(bot, json.dumps(body), "application/json")


# -- the lab side ------------------------------------------------------------------------------


def fresh_image(
    lab: lab_module.Lab, name: str, *, via: str | None = None, size: int = 1 << 20
) -> tuple[str, str]:
    """A new image nobody mirrored yet (random content), and the line that pulls its copy.

    ``via``: the address the bot is told to pull from (a relay in front of ``lab.source``).
    """
    repository = f"library/slack-{name}"
    layers = [lab_module.LayerSpec(size, random.randrange(1 << 30))]
    lab_module.push_image(lab.source, repository, "1.0", layers)
    registry = via or lab.source
    source = f"{registry}/{repository}:1.0"
    flat = f"{registry.replace(':', '-')}.{repository.replace('/', '.')}"
    target = f"{lab.target}/mirror/{flat}:1.0"
    return source, f"docker pull {target} && docker tag {target} {source}"


def ts_of(call: Call) -> str:
    return str(call.result["ts"])


def finished(slack: FakeSlack, channel: str, posts: int = 2) -> list[Call]:
    """The posts in ``channel`` once the final answer (the ``posts``-th message) arrived."""
    slack.wait_for(lambda: len(slack.posts(channel)) >= posts)
    return slack.posts(channel)


def assert_live_then_final(slack: FakeSlack, channel: str, pull: str) -> tuple[Call, Call]:
    ack, final = finished(slack, channel)
    assert "mirroring 1 image" in ack.params["text"]
    edits = [c for c in slack.updates(channel, ts_of(ack)) if c.status == 200]
    assert edits, "the acknowledgement was never edited with progress"
    assert "done (1/1 ready)" in edits[-1].params["text"]
    assert slack.calls.index(edits[-1]) < slack.calls.index(final)
    assert escape(pull) in final.params["text"]
    assert "```" in final.params["text"]
    return ack, final


# -- HTTP mode ---------------------------------------------------------------------------------


def test_slash_command_is_acked_then_answered_in_a_thread(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "C0SLASH01"
    image, pull = fresh_image(lab, "slash", via=bot.slow_source, size=3 << 20)
    assert slash(bot, channel, image) == 200
    ack, final = assert_live_then_final(bot.slack, channel, pull)
    edits = [c.params["text"] for c in bot.slack.updates(channel, ts_of(ack))]
    live = [text for text in edits[:-1] if " MB / " in text]
    assert live, f"no progress bar among the edits: {edits}"
    assert "thread_ts" not in ack.params  # the acknowledgement opens the thread ...
    assert final.params["thread_ts"] == ts_of(ack)  # ... and the answer goes into it
    assert all(c.token == BOT_TOKEN for c in bot.slack.calls)


def test_badly_signed_request_is_refused_and_nothing_runs(
    bots: dict[str, RunningBot],
) -> None:
    bot, channel = bots["http"], "C0FORGED1"
    assert slash(bot, channel, "help", secret="not-the-signing-secret") == 401
    # Requests are handled in order: once the next (signed) one is answered, the forged one
    # has had every chance to post.
    assert slash(bot, channel, "help") == 200
    [answer] = finished(bot.slack, channel, posts=1)
    assert "hub-mirror-bot copies images" in answer.params["text"]
    assert len(bot.slack.posts(channel)) == 1


def test_the_events_url_passes_slacks_verification(bots: dict[str, RunningBot]) -> None:
    """What Slack sends when an admin enters the Request URL in the app's settings."""
    body = json.dumps({"token": "t", "challenge": "c4allenge-123", "type": "url_verification"})
    status, answer = _request(bots["http"], body, "application/json")
    assert status == 200 and "c4allenge-123" in answer


def test_mention_in_a_thread_is_answered_in_that_thread(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel, thread = bots["http"], "C0THREAD1", "1690000000.000100"
    image, pull = fresh_image(lab, "mention")
    # Slack turns a name like host:port/path into a link and escapes the rest.
    text = f"<@{BOT_USER_ID}> mirror <http://{image}|{image}>"
    mention = {
        "type": "app_mention",
        "user": USER,
        "text": text,
        "ts": "1690000000.000200",
        "thread_ts": thread,
        "channel": channel,
        "event_ts": "1690000000.000200",
    }
    assert event(bot, mention) == 200
    ack, final = assert_live_then_final(bot.slack, channel, pull)
    assert ack.params["thread_ts"] == thread
    assert final.params["thread_ts"] == thread


def test_direct_message_is_answered_in_the_dm(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "D0DIRECT1"
    image, pull = fresh_image(lab, "dm")
    message = {
        "type": "message",
        "channel_type": "im",
        "user": USER,
        "text": f"mirror {image}",
        "ts": "1690000001.000100",
        "channel": channel,
        "event_ts": "1690000001.000100",
    }
    assert event(bot, message) == 200
    ack, final = assert_live_then_final(bot.slack, channel, pull)
    assert "thread_ts" not in ack.params and "thread_ts" not in final.params


def test_a_file_shared_in_a_dm_is_read_as_if_pasted(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "D0FILES01"
    image, pull = fresh_image(lab, "file")
    shared = bot.slack.add_file("images.txt", f"# what the cluster needs\n{image}\n".encode())
    message = {
        "type": "message",
        "subtype": "file_share",
        "channel_type": "im",
        "user": USER,
        "text": "",
        "files": [shared],
        "ts": "1690000002.000100",
        "channel": channel,
        "event_ts": "1690000002.000100",
    }
    assert event(bot, message) == 200
    assert_live_then_final(bot.slack, channel, pull)
    assert bot.slack.downloads == [(shared["id"], BOT_TOKEN)]


async def test_shared_files_are_capped_and_fetched_with_the_bot_token(
    local_slack: FakeSlack, adapter: SlackAdapter
) -> None:
    read: list[str] = []

    async def reader(incoming: Incoming, conversation: Conversation) -> None:
        assert incoming.file is not None
        try:
            read.append(await file_text(incoming.text, incoming.file))
        except FileRefused as exc:
            read.append(str(exc))

    bolt = adapter._build_app(reader)
    small = local_slack.add_file("compose.yaml", b"services:\n  web:\n    image: nginx:1.25\n")
    big = local_slack.add_file("huge.yaml", b"x", size=MAX_FILE_BYTES + 1)
    binary = local_slack.add_file("a.png", b"\x89PNG\x00\x00")
    mention = mention_of(f"<@{BOT_USER_ID}> mirror", files=[small])
    await dispatch(
        bolt,
        callback(mention),
        callback(dm_of("", subtype="file_share", files=[big])),
        callback(dm_of("", subtype="file_share", files=[binary])),
        callback(dm_of("", subtype="file_share")),  # no file after all: ignored
    )
    assert sorted(read) == [
        "`a.png` is not a text file; share manifests, compose files or image lists as text.",
        "`huge.yaml` is 257 KB; I read shared files of up to 256 KB.",
        "mirror\nservices:\n  web:\n    image: nginx:1.25\n",
    ]
    fetched = dict(local_slack.downloads)
    assert fetched == {small["id"]: BOT_TOKEN, binary["id"]: BOT_TOKEN}  # never over the cap


def test_a_429_storm_on_edits_still_ends_with_the_final_message(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "C0STORM01"
    image, pull = fresh_image(lab, "storm")
    bot.slack.update_429 = 3
    assert slash(bot, channel, image) == 200
    assert_live_then_final(bot.slack, channel, pull)
    assert len([c for c in bot.slack.updates(channel) if c.status == 429]) == 3


def test_a_slack_outage_delays_the_answers_but_loses_nothing(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "C0OUTAGE1"
    image, pull = fresh_image(lab, "outage")
    bot.slack.outage = 3
    assert slash(bot, channel, image) == 200
    assert_live_then_final(bot.slack, channel, pull)
    assert len([c for c in bot.slack.of("chat.postMessage", channel) if c.status == 503]) >= 3


def test_markup_in_a_command_is_escaped_and_cannot_ping(bots: dict[str, RunningBot]) -> None:
    bot, channel = bots["http"], "C0INJECT1"
    assert slash(bot, channel, "&lt;!channel&gt; <!here>") == 200
    [answer] = finished(bot.slack, channel, posts=1)
    text = answer.params["text"]
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text and "<!here>" not in text
    assert answer.params["parse"] == "none" and answer.params["link_names"] is False


def test_slash_command_where_the_bot_cannot_post_moves_to_the_dm(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["http"], "G0PRIVATE1"
    bot.slack.closed_channels.add(channel)
    image, pull = fresh_image(lab, "private")
    assert slash(bot, channel, image) == 200
    dm = "D" + USER[1:]
    assert_live_then_final(bot.slack, dm, pull)
    [note] = bot.slack.of("response_url")
    assert note.params["response_type"] == "ephemeral" and "direct messages" in note.params["text"]
    assert bot.slack.posts(channel) == []


def test_settings_that_cannot_work_are_one_sentence(lab: lab_module.Lab, tmp_path: Path) -> None:
    slack = FakeSlack("xoxb-the-real-token").start()
    try:
        base = bot_env(
            lab, tmp_path / "m.db", SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url
        )
        no_mode = subprocess.run(
            [MIRROR_BOT, "run"], env=base, capture_output=True, text=True, timeout=60, check=False
        )
        bad_token = subprocess.run(
            [MIRROR_BOT, "run"],
            env=base | {"SLACK_APP_TOKEN": APP_TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        slack.stop()
    assert no_mode.returncode == 2
    assert "Set SLACK_APP_TOKEN for Socket Mode or SLACK_SIGNING_SECRET" in no_mode.stderr
    assert bad_token.returncode == 2
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in bad_token.stderr
    for done in (no_mode, bad_token):
        assert "Traceback" not in done.stderr and BOT_TOKEN not in done.stderr


def test_a_job_interrupted_by_a_restart_finishes_in_the_same_thread(
    lab: lab_module.Lab, relay: str, tmp_path: Path
) -> None:
    slack, channel = FakeSlack(BOT_TOKEN).start(), "C0RESTART"
    db, log = tmp_path / "mirror.db", tmp_path / "bot.log"
    image, pull = fresh_image(lab, "restart", via=relay, size=4 << 20)
    try:
        bot = start_bot(lab, slack, relay, db, log)
        assert slash(bot, channel, image) == 200
        slack.wait_for(lambda: any(" MB / " in c.params["text"] for c in slack.updates(channel)))
        stop_bot(bot)
        [ack] = slack.posts(channel)
        before = len(slack.updates(channel))
        bot = start_bot(lab, slack, relay, db, log)
        try:
            [_, final] = finished(slack, channel)
        finally:
            stop_bot(bot)
    finally:
        slack.stop()
    resumed = slack.updates(channel)[before:]
    assert resumed and {c.params["ts"] for c in resumed} == {ts_of(ack)}
    assert "done (1/1 ready)" in resumed[-1].params["text"]
    assert final.params["thread_ts"] == ts_of(ack)
    assert escape(pull) in final.params["text"]
    assert_clean_log(log)


def press(
    bot: RunningBot, user: str, message: Call, value: str, secret: str = SIGNING_SECRET
) -> int:
    channel = str(message.params["channel"])
    payload = json.dumps(block_actions(user, channel, message, value))
    body = urllib.parse.urlencode({"payload": payload})
    return _post(bot, body, "application/x-www-form-urlencoded", secret)


def test_retry_button_in_http_mode_only_for_its_owner_and_only_once(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    """A failed image gets a Retry button. A forged press is refused (401), another user's
    press is answered with a message only they see, the owner's press runs the copy again in
    the thread (the image exists by then), and a second press acts no more."""
    bot, channel = bots["http"], "C0BUTTON1"
    slack = bot.slack
    repository = f"library/slack-retry-{random.randrange(10**9)}"
    assert slash(bot, channel, f"{lab.source}/{repository}:1.0") == 200
    ack, answer = finished(slack, channel)
    assert slack.buttons(ack) == [("Cancel", slack.buttons(ack)[0][1])]
    [(label, value)] = slack.buttons(answer)
    assert label == "Retry" and answer.params["thread_ts"] == ts_of(ack)
    assert slack.updates(channel, ts_of(ack))[-1].params["blocks"] == []  # Cancel went away

    assert press(bot, USER, answer, value, secret="not-the-signing-secret") == 401
    assert press(bot, BOB, answer, value) == 200
    slack.wait_for(lambda: bool(slack.ephemerals(BOB)))
    [refusal] = slack.ephemerals(BOB)
    assert (
        f"slack:{USER}" in refusal.params["text"] and "nothing was done" in refusal.params["text"]
    )
    assert refusal.params["thread_ts"] == ts_of(ack)
    assert len(slack.posts(channel)) == 2

    lab_module.push_image(lab.source, repository, "1.0", [lab_module.LayerSpec(1 << 20, 7)])
    assert press(bot, USER, answer, value) == 200
    [*_, retried] = finished(slack, channel, posts=4)
    assert "```" in retried.params["text"] and repository in retried.params["text"]
    assert retried.params["thread_ts"] == ts_of(ack)
    assert press(bot, USER, answer, value) == 200
    slack.wait_for(lambda: bool(slack.ephemerals(USER)))
    assert "already pressed" in slack.ephemerals(USER)[0].params["text"]
    assert len(slack.posts(channel)) == 4


def test_a_tags_answer_has_mirror_buttons_and_pressing_one_mirrors_that_tag(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    """``/mirror tags IMAGE`` lists the tags with a "Mirror TAG" button per newest tag (Block
    Kit); another member's press is refused in a message only they see, the asker's press
    mirrors that tag in the answer's thread."""
    bot, channel = bots["http"], "C0TAGS001"
    slack = bot.slack
    repository = f"library/slack-tags-{random.randrange(10**9)}"
    layers = [lab_module.LayerSpec(1 << 20, random.randrange(1 << 30))]
    for tag in ("1.0", "1.1"):
        lab_module.push_image(lab.source, repository, tag, layers)
    assert slash(bot, channel, f"tags {lab.source}/{repository}") == 200
    [answer] = finished(slack, channel, posts=1)
    buttons = dict(slack.buttons(answer))
    assert set(buttons) == {"Mirror 1.0", "Mirror 1.1"}
    refused = len(slack.ephemerals(BOB))
    assert press(bot, BOB, answer, buttons["Mirror 1.1"]) == 200
    slack.wait_for(lambda: len(slack.ephemerals(BOB)) > refused)
    assert "nothing was done" in slack.ephemerals(BOB)[-1].params["text"]
    assert len(slack.posts(channel)) == 1

    assert press(bot, USER, answer, buttons["Mirror 1.1"]) == 200
    [_, ack, final] = finished(slack, channel, posts=3)
    assert ack.params["thread_ts"] == final.params["thread_ts"] == ts_of(answer)
    flat = f"{lab.source.replace(':', '-')}.{repository.replace('/', '.')}"
    target = f"{lab.target}/mirror/{flat}:1.1"
    source = f"{lab.source}/{repository}:1.1"
    assert escape(f"docker pull {target} && docker tag {target} {source}") in final.params["text"]
    assert lab_module.pull_manifest(lab.target, f"mirror/{flat}", "1.1")


# -- Socket Mode -------------------------------------------------------------------------------


def test_socket_mode_button_press_is_acked_and_answered(bots: dict[str, RunningBot]) -> None:
    bot, channel = bots["socket"], "C0SOCKET2"
    slack = bot.slack
    assert slack.app_token
    envelope = slack.send_envelope("slash_commands", _slash_payload(channel, "status"))
    [status] = finished(slack, channel, posts=1)
    pressed = slack.send_envelope("interactive", block_actions(USER, channel, status, "nope"))
    slack.wait_for(lambda: bool(slack.ephemerals(USER)))
    slack.wait_for(lambda: any(a.get("envelope_id") == pressed for a in slack.acks))
    assert envelope != pressed
    assert "do not know this button" in slack.ephemerals(USER)[0].params["text"]


def test_socket_mode_slash_command_is_acked_and_answered(
    lab: lab_module.Lab, bots: dict[str, RunningBot]
) -> None:
    bot, channel = bots["socket"], "C0SOCKET1"
    image, pull = fresh_image(lab, "socket")
    envelope = bot.slack.send_envelope("slash_commands", _slash_payload(channel, image))
    bot.slack.wait_for(lambda: any(a.get("envelope_id") == envelope for a in bot.slack.acks))
    ack, final = assert_live_then_final(bot.slack, channel, pull)
    assert final.params["thread_ts"] == ts_of(ack)
    opened = bot.slack.of("apps.connections.open")
    assert opened and opened[0].token == APP_TOKEN


# -- text in and out ---------------------------------------------------------------------------


def test_slack_text_becomes_the_grammar() -> None:
    assert command_text("<@UB0T> mirror <http://gcr.io/x:1|gcr.io/x:1>", "UB0T") == (
        "mirror gcr.io/x:1"
    )
    assert command_text("mirror a&amp;b &lt;x&gt;") == "mirror a&b <x>"
    assert command_text("mirror <!channel> <@U123>") == "mirror <!channel> <@U123>"
    assert slash_text("/mirror", "status abc123") == "/status abc123"
    assert slash_text("/mirror", "") == "/help"
    assert slash_text("/mirror", "nginx --platform all") == "/mirror nginx --platform all"


def test_mrkdwn_escapes_everything_echoed_and_mentions_on_notify() -> None:
    view = MessageView(
        "Job <!channel>",
        Tone.SUCCESS,
        rows=(Row("a<b>", "copying", Tone.WORKING, "x & y", Bar(5, 10)),),
        code=("docker pull a && docker tag a <b>",),
        notify=True,
    )
    text = to_mrkdwn(view, requester=USER)
    assert text.startswith(f"<@{USER}> :white_check_mark: *Job &lt;!channel&gt;*")
    assert "`a&lt;b&gt;`" in text and "x &amp; y" in text
    assert "```\ndocker pull a &amp;&amp; docker tag a &lt;b&gt;\n```" in text
    assert to_mrkdwn(view, requester="<!here>").startswith(":white_check_mark:")


def test_reply_ref_round_trips() -> None:
    assert parse_ref("C1:1.2:1.3:U1") == ("C1", "1.2", "1.3", "U1")
    assert parse_ref("D1::1.3:") == ("D1", None, "1.3", None)
    assert parse_ref("garbage") is None
