"""The DingTalk adapter against a local DingTalk (``tests/support/fake_dingtalk.py``).

The real dingtalk-stream client connects to the local stream gateway and reads its frames; the
adapter's own aiohttp calls go to the local Open API; HTTP callbacks are signed as DingTalk
signs them. Nothing of the SDK is replaced. The adapter's rules are tested in process with a
recorder as the bot, then the real bot (``MirrorBot``, the lab's registries) in process in both
modes, and a few runs of ``mirror-bot run`` end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

import lab as lab_module
from adapters import dingtalk_text
from adapters.dingtalk import (
    CARDS_PATH,
    EVENTS_PATH,
    DingTalkAdapter,
    DingTalkSettings,
    parse_ref,
    plugin,
)
from adapters.dingtalk_gateway import SDK_LOG
from bot.app import MirrorBot
from bot.chat import (
    Addressable,
    ChatUnavailable,
    ConfigurationError,
    Conversation,
    Incoming,
    RateLimited,
    Undeliverable,
)
from bot.logs import RedactSecrets
from bot.runtime import open_runtime
from bot.settings import Settings
from bot.view import Action, MessageView, Row, Tone
from tests.support.cli import MIRROR_BOT, bot_env, clean_env, run_mirror
from tests.support.fake_dingtalk import (
    CARDS_TOPIC,
    CLIENT_ID,
    CLIENT_SECRET,
    MESSAGES_TOPIC,
    OTHER_CORP,
    TEMPLATE,
    FakeDingTalk,
    Sent,
    signed_headers,
)
from tests.support.throttle import throttled

GROUP = "cidGroupTeam0001+/=="
ALICE = "alice01"
BOB = "bob02"


@dataclass
class Recorder:
    """The bot's side of the port: what it was handed, answered with one post each."""

    seen: list[tuple[Incoming, Conversation]]

    async def __call__(self, incoming: Incoming, conversation: Conversation) -> None:
        self.seen.append((incoming, conversation))
        await conversation.post(MessageView(f"answer {len(self.seen)}"))


@pytest.fixture(scope="module")
def dingtalk() -> Iterator[FakeDingTalk]:
    fake = FakeDingTalk().start()
    yield fake
    fake.stop()


def settings_for(fake: FakeDingTalk, **more: Any) -> DingTalkSettings:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "api_url": fake.url,
    }
    return DingTalkSettings(_env_file=None, **(values | more))  # type: ignore[call-arg]


async def until(fake: FakeDingTalk, predicate: Callable[[], Any], timeout: float = 60) -> Any:
    """``fake.wait_for`` off the loop: the adapter under test runs on this one."""
    return await asyncio.to_thread(fake.wait_for, predicate, timeout)


@contextlib.asynccontextmanager
async def serving(
    adapter: DingTalkAdapter, handler: Any, fake: FakeDingTalk
) -> AsyncIterator[DingTalkAdapter]:
    """The adapter serving until the block ends (connected, in stream mode), then stopped."""
    before = fake.connections()
    task = asyncio.create_task(adapter.serve(handler))
    try:
        if adapter.mode == "stream":
            await until(fake, lambda: fake.connections() > before or task.done())
        else:
            await until_listening(adapter, task)
        if task.done():
            task.result()
        yield adapter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until_listening(adapter: DingTalkAdapter, task: asyncio.Task[None]) -> None:
    while not task.done():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", adapter.port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def callback(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", json=body, headers=headers) as response,
    ):
        return response.status


# -- the adapter's rules, in process ----------------------------------------------------------


async def test_stream_messages_are_answered_where_they_were_asked_once_each(
    dingtalk: FakeDingTalk,
) -> None:
    """A group message (the robot ``@``-ed) and a one-to-one message arrive over the real
    SDK's connection, each is acknowledged and answered in its own conversation through its
    session webhook; a frame the gateway sends twice is acted on once."""
    recorder = Recorder([])
    adapter = settings_for(dingtalk).build()
    private = dingtalk.private_chat(BOB)
    async with serving(adapter, recorder, dingtalk):
        group_message = dingtalk.message(GROUP, ALICE, "mirror nginx:1.25")
        first = dingtalk.push(MESSAGES_TOPIC, group_message)
        again = dingtalk.push(MESSAGES_TOPIC, group_message)  # its ack was late
        dingtalk.push(MESSAGES_TOPIC, dingtalk.message(private, BOB, "/status", group=False))
        await until(dingtalk, lambda: len(dingtalk.in_conversation(private)) == 1)
        await until(dingtalk, lambda: dingtalk.acked(first) and dingtalk.acked(again))
    assert [(i.text, i.user_id, i.chat_id, i.is_group) for i, _ in recorder.seen] == [
        ("mirror nginx:1.25", ALICE, GROUP, True),
        ("/status", BOB, private, False),
    ]
    assert not any(i.closed_by_default for i, _ in recorder.seen)
    [in_group] = dingtalk.in_conversation(GROUP)
    assert in_group.via == "webhook" and "answer 1" in in_group.text
    [opened] = dingtalk.opened
    assert opened["subscriptions"] == [{"type": "CALLBACK", "topic": MESSAGES_TOPIC}]
    assert dingtalk.acked(first)["code"] == 200  # type: ignore[index]
    # A long job's answer mentions its requester (the webhook's ``at`` makes it a ping).
    _, conversation = recorder.seen[0]
    await conversation.post(MessageView("long job done", Tone.SUCCESS, notify=True))
    *_, notified = dingtalk.in_conversation(GROUP)
    assert notified.at == (ALICE,) and notified.text.startswith(f"@{ALICE} **")


async def test_a_stopped_adapter_leaves_no_stream_client_behind(dingtalk: FakeDingTalk) -> None:
    """The SDK's ``start()`` swallows cancellation; stopping the adapter still ends its thread
    and its connection."""
    adapter = settings_for(dingtalk).build()
    before = dingtalk.connections()
    async with serving(adapter, Recorder([]), dingtalk):
        assert dingtalk.connections() == before + 1
    await until(dingtalk, lambda: dingtalk.connections() == before)
    assert not [t for t in threading.enumerate() if t.name == "dingtalk-stream"]


def test_reply_refs_round_trip() -> None:
    assert parse_ref("not json") is None
    assert parse_ref('["", 1, "a", "r", ""]') is None


async def test_the_open_api_answers_when_the_webhook_is_gone(dingtalk: FakeDingTalk) -> None:
    """After a restart (no webhook), once a webhook expired, or when it refuses: the Open API,
    a group by its conversation id, a person by staffId."""
    recorder = Recorder([])
    adapter = settings_for(dingtalk).build()
    private = dingtalk.private_chat("carol03")
    async with serving(adapter, recorder, dingtalk):
        dingtalk.push(
            MESSAGES_TOPIC, dingtalk.message("cidExpired01==", ALICE, "help", webhook_left=30)
        )
        dingtalk.push(MESSAGES_TOPIC, dingtalk.message(private, "carol03", "help", group=False))
        await until(dingtalk, lambda: len(recorder.seen) == 2)
        await until(dingtalk, lambda: dingtalk.in_conversation(private))
    [expired] = dingtalk.in_conversation("cidExpired01==")
    assert expired.via == "api"
    _, conversation = recorder.seen[1]
    reply = await conversation.post(MessageView("again", Tone.SUCCESS))
    reopened = await adapter.reopen(reply.ref)
    assert reopened is not None
    again, _ = reopened
    await again.post(MessageView("after a restart"))
    *_, last = dingtalk.in_conversation(private)
    assert last.via == "api" and "after a restart" in last.text


# -- the bot, in process, in both modes -------------------------------------------------------


@dataclass
class Harness:
    """One DingTalk, one adapter and what to say to it in its mode."""

    fake: FakeDingTalk
    adapter: DingTalkAdapter

    async def deliver(self, topic: str, data: dict[str, Any]) -> None:
        if self.adapter.mode == "stream":
            frame = self.fake.push(topic, data)
            await until(self.fake, lambda: self.fake.acked(frame))
            return
        path = EVENTS_PATH if topic == MESSAGES_TOPIC else CARDS_PATH
        assert self.adapter.port is not None
        assert await callback(self.adapter.port, path, data, signed_headers()) == 200

    async def say(self, conversation: str, staff: str | None, text: str, **more: Any) -> None:
        await self.deliver(MESSAGES_TOPIC, self.fake.message(conversation, staff, text, **more))

    async def press(self, card: str, user: str, action: str) -> None:
        await self.deliver(CARDS_TOPIC, self.fake.press(card, user, action))


def bot_settings(tmp_path: Path, lab: lab_module.Lab, *sources: str, **more: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=tmp_path / "bot.db",
        mirror_target=f"{lab.target}/dt{uuid.uuid4().hex[:8]}",
        mirror_engine="registry",
        mirror_allowed_sources=(*sources, lab.source),
        mirror_insecure_registries=(*sources, lab.source, lab.target),
        **more,
    )


@contextlib.asynccontextmanager
async def bot_on(
    settings: Settings, fake: FakeDingTalk, mode: str, **adapter_settings: Any
) -> AsyncIterator[Harness]:
    """The real bot with the adapter, as ``mirror-bot run`` wires them (jobs a restart
    interrupted resume first), until the block ends."""
    port = lab_module.free_port() if mode == "http" else None
    adapter = settings_for(fake, mode=mode, port=port, **adapter_settings).build()
    async with (
        open_runtime(settings) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            runtime.lookups,
        ) as bot,
    ):
        await bot.recover({"dingtalk": adapter})
        async with serving(adapter, bot.handle, fake):
            yield Harness(fake, adapter)


@pytest.fixture(params=["stream", "http"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake() -> Iterator[FakeDingTalk]:
    local = FakeDingTalk().start()
    yield local
    local.stop()


def fresh_image(lab: lab_module.Lab, name: str, size: int = 2 << 20) -> str:
    """A repository nobody mirrored yet (random content): ``library/dingtalk-NAME-N``."""
    repository = f"library/dingtalk-{name}-{random.randrange(10**9)}"
    layers = [lab_module.LayerSpec(size, random.randrange(1 << 30))]
    lab_module.push_image(lab.source, repository, "1.0", layers)
    return repository


def pull_line(settings: Settings, source: str, repository: str) -> str:
    flat = f"{source.replace(':', '-')}.{repository.replace('/', '.')}"
    target = f"{settings.mirror_target}/{flat}:1.0"
    return f"docker pull {target} && docker tag {target} {source}/{repository}:1.0"


async def test_mirror_in_a_card_updated_in_place_then_answered_with_the_pull_command(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, mode: str
) -> None:
    repository = fresh_image(lab, "card", size=3 << 20)
    with throttled(lab.source, rate=1_000_000) as slow:
        settings = bot_settings(tmp_path, lab, slow.address)
        async with bot_on(settings, fake, mode, card_template_id=TEMPLATE) as chat:
            await chat.say(GROUP, ALICE, f"/mirror {slow.address}/{repository}:1.0")
            ack, answer = await until(fake, lambda: _two(fake.in_conversation(GROUP)))
    card = fake.card_of(ack)
    assert ack.kind == "card" and "mirroring 1 image" in ack.title
    assert card.template == TEMPLATE and card.callback == mode.upper()
    assert any(" MB / " in p["content"] for p in card.params[1:-1]), "no progress was shown"
    assert "done (1/1 ready)" in card.now["title"] and card.buttons() == []
    assert [label for label, _ in json_buttons(card.params[0])] == ["Cancel"]  # while it ran
    assert answer.kind == "card" and "ready" in answer.title
    assert "```" in answer.text and pull_line(settings, slow.address, repository) in answer.text


def json_buttons(params: dict[str, str]) -> list[tuple[str, str]]:
    return [(b["label"], b["id"]) for b in json.loads(params["buttons"])]


def _two(sent: list[Sent]) -> list[Sent] | None:
    return sent if len(sent) >= 2 else None


async def test_mirror_in_plain_messages_is_one_at_the_start_and_one_at_the_end(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, mode: str
) -> None:
    """Without a card template a robot message cannot be edited: the acknowledgement, the
    final answer, nothing between; the Cancel button is shown as the command."""
    repository = fresh_image(lab, "plain")
    settings = bot_settings(tmp_path, lab)
    private = fake.private_chat(ALICE)
    async with bot_on(settings, fake, mode) as chat:
        await chat.say(private, ALICE, f"mirror {lab.source}/{repository}:1.0", group=False)
        ack, answer = await until(fake, lambda: _two(fake.in_conversation(private)))
        await chat.adapter._commands.wait()
    assert len(fake.in_conversation(private)) == 2
    assert {ack.via, answer.via} == {"webhook"} and fake.cards == {}
    assert "mirroring 1 image" in ack.title and "type: `/cancel " in ack.text
    assert "ready" in answer.title and pull_line(settings, lab.source, repository) in answer.text


async def test_a_retry_button_acts_for_its_owner_once_and_refuses_others_privately(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, mode: str
) -> None:
    """A failed image's answer card has Retry. Another member's press is refused in a
    one-to-one message only they see; the owner's press copies it (the image exists by then)
    in the same group; a second press acts no more."""
    repository = f"library/dingtalk-retry-{random.randrange(10**9)}"
    settings = bot_settings(tmp_path, lab)
    async with bot_on(settings, fake, mode, card_template_id=TEMPLATE) as chat:
        await chat.say(GROUP, ALICE, f"/mirror {lab.source}/{repository}:1.0")
        _, answer = await until(fake, lambda: _two(fake.in_conversation(GROUP)))
        [(label, retry)] = fake.card_of(answer).buttons()
        assert label == "Retry"

        await chat.press(str(answer.card), BOB, retry)
        [refusal] = await until(fake, lambda: fake.in_conversation(fake.private_chat(BOB)))
        assert f"dingtalk:{ALICE}" in refusal.text and "nothing was done" in refusal.text
        assert len(fake.in_conversation(GROUP)) == 2

        lab_module.push_image(lab.source, repository, "1.0", [lab_module.LayerSpec(1 << 20, 7)])
        await chat.press(str(answer.card), ALICE, retry)
        *_, retried = await until(fake, lambda: _n(fake.in_conversation(GROUP), 4))
        assert retried.kind == "card" and pull_line(settings, lab.source, repository) in (
            retried.text
        )
        await chat.press(str(answer.card), ALICE, retry)
        [used] = await until(fake, lambda: fake.in_conversation(fake.private_chat(ALICE)))
        assert "already pressed" in used.text
    assert len(fake.in_conversation(GROUP)) == 4


def _n(sent: list[Sent], n: int) -> list[Sent] | None:
    return sent if len(sent) >= n else None


async def test_an_external_contact_is_refused_unless_allowlisted(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, mode: str
) -> None:
    """Members of the app's organisation may ask; a sender without a staffId, or from another
    organisation, is told who to ask and what id to allow, and nothing runs."""
    guest = "$:LWCP_v1:$guest0001"
    settings = bot_settings(tmp_path, lab)
    async with bot_on(settings, fake, mode) as chat:
        await chat.say(GROUP, None, f"/mirror {lab.source}/library/hello:1.0", sender_id=guest)
        await chat.say("cidOther01==", "mallory", "/mirror nginx", corp=OTHER_CORP)
        await chat.say("cidOwn0001==", ALICE, "/status")
        [refused] = await until(fake, lambda: fake.in_conversation(GROUP))
        [other] = await until(fake, lambda: fake.in_conversation("cidOther01=="))
        [answered] = await until(fake, lambda: fake.in_conversation("cidOwn0001=="))
        await chat.adapter._commands.wait()
    assert "not allowed" in refused.text and f"dingtalk:{guest}" in refused.text
    assert f"dingtalk:{GROUP}" in refused.text  # or the chat, which an admin may allow
    assert "not allowed" in other.text and "dingtalk:mallory" in other.text
    assert "not allowed" not in answered.text
    assert len(fake.in_conversation(GROUP)) == 1  # no acknowledgement: no job

    allowed = bot_settings(tmp_path, lab, mirror_allowed_users=(f"dingtalk:{guest}",))
    async with bot_on(allowed, fake, mode) as chat:
        await chat.say(GROUP, None, "/status", sender_id=guest)
        await until(fake, lambda: _two(fake.in_conversation(GROUP)))
    assert "not allowed" not in fake.in_conversation(GROUP)[-1].text


async def test_forged_and_stale_callbacks_are_refused(tmp_path: Path, fake: FakeDingTalk) -> None:
    """HTTP mode: a wrong or missing signature, or one over an hour old, is refused (401) and
    nothing is handed to the bot; so is a card press. Over the stream, a message or frame
    older than an hour is ignored too."""
    recorder = Recorder([])
    port = lab_module.free_port()
    adapter = settings_for(fake, mode="http", port=port, card_template_id=TEMPLATE).build()
    message = fake.message(GROUP, ALICE, "/status")
    async with serving(adapter, recorder, fake):
        for headers in (
            signed_headers("not-the-secret"),
            signed_headers(age=3700),
            {"timestamp": signed_headers()["timestamp"]},
            {},
        ):
            assert await callback(port, EVENTS_PATH, message, headers) == 401
            assert await callback(port, CARDS_PATH, {"outTrackId": "x"}, headers) == 401
        stale = fake.message(GROUP, ALICE, "/help", age=3700)
        assert await callback(port, EVENTS_PATH, stale, signed_headers()) == 200
        assert await callback(port, EVENTS_PATH, message, signed_headers()) == 200
        await adapter._commands.wait()
    assert [i.text for i, _ in recorder.seen] == ["/status"]

    recorder = Recorder([])
    adapter = settings_for(fake).build()
    async with serving(adapter, recorder, fake):
        old_frame = fake.push(MESSAGES_TOPIC, fake.message(GROUP, ALICE, "/help"), age=3700)
        old_message = fake.push(MESSAGES_TOPIC, fake.message(GROUP, ALICE, "/help", age=3700))
        fresh = fake.push(MESSAGES_TOPIC, fake.message(GROUP, ALICE, "/history"))
        await until(fake, lambda: all(fake.acked(f) for f in (old_frame, old_message, fresh)))
        await until(fake, lambda: recorder.seen)
        await adapter._commands.wait()
    assert [i.text for i, _ in recorder.seen] == ["/history"]


async def test_a_job_interrupted_by_a_restart_finishes_in_the_same_card(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, mode: str
) -> None:
    """The bot stops mid-copy; started again, it updates the same card through the Open API
    and answers in the same conversation."""
    repository = fresh_image(lab, "restart", size=4 << 20)
    with throttled(lab.source, rate=600_000) as slow:
        settings = bot_settings(tmp_path, lab, slow.address)
        async with bot_on(settings, fake, mode, card_template_id=TEMPLATE) as chat:
            await chat.say(GROUP, ALICE, f"/mirror {slow.address}/{repository}:1.0")
            [ack] = await until(fake, lambda: fake.in_conversation(GROUP))
            card = fake.card_of(ack)
            await until(fake, lambda: any(" MB / " in p["content"] for p in card.params))
        updates = len(card.params)
        async with bot_on(settings, fake, mode, card_template_id=TEMPLATE):
            _, answer = await until(fake, lambda: _two(fake.in_conversation(GROUP)))
    assert len(card.params) > updates and "done (1/1 ready)" in card.now["title"]
    assert answer.via == "api" and pull_line(settings, slow.address, repository) in answer.text


# -- the rest of the adapter's rules -----------------------------------------------------------


async def test_a_press_after_a_restart_is_answered_where_the_card_is(
    dingtalk: FakeDingTalk,
) -> None:
    """A card delivered by an earlier process: the callback's space names the conversation
    (a group, or the presser's one-to-one chat), so the press is placed and answered there."""
    before = settings_for(dingtalk, card_template_id=TEMPLATE).build()
    group_card = await (await before.open_chat("cidCards001==")).post(MessageView("a card"))
    private_card = await (await before.open_private("dave04")).post(MessageView("a card"))
    recorder = Recorder([])
    after = settings_for(dingtalk, card_template_id=TEMPLATE).build()
    async with serving(after, recorder, dingtalk):
        for reply, user in ((group_card, ALICE), (private_card, "dave04")):
            parsed = parse_ref(reply.ref)
            assert parsed is not None and parsed[1] is not None
            dingtalk.push(CARDS_TOPIC, dingtalk.press(parsed[1], user, "job1.cancel"))
        await until(dingtalk, lambda: len(recorder.seen) == 2)
        await after._commands.wait()
    assert [
        (i.chat_id, i.user_id, i.is_group, i.press and i.press.action_id) for i, _ in recorder.seen
    ] == [
        ("cidCards001==", ALICE, True, "job1.cancel"),
        (dingtalk.private_chat("dave04"), "dave04", False, "job1.cancel"),
    ]
    assert [s.kind for s in dingtalk.in_conversation("cidCards001==")] == ["card", "card"]
    subscribed = dingtalk.opened[-1]["subscriptions"]
    assert {"type": "CALLBACK", "topic": CARDS_TOPIC} in subscribed


async def test_the_open_api_failures_in_the_ports_terms(dingtalk: FakeDingTalk) -> None:
    """429 and a flow-controlled recipient are RateLimited (the bot waits and retries); a
    token DingTalk stopped taking is fetched again; a recipient it does not know is
    Undeliverable, as are credentials it refuses."""
    adapter = settings_for(dingtalk).build()
    assert isinstance(adapter, Addressable)  # approvals and private notes can reach DingTalk
    group = await adapter.open_chat("cidErrors01==")
    person = await adapter.open_private("erin05")
    dingtalk.limit_next = 1
    with pytest.raises(RateLimited):
        await group.post(MessageView("one"))
    dingtalk.flow_control_next = 1
    with pytest.raises(RateLimited):
        await person.post(MessageView("two"))
    dingtalk.expire_tokens()
    with pytest.raises(ChatUnavailable):  # the 401: retried by the bot, with a new token
        await group.post(MessageView("three"))
    await group.post(MessageView("four"))
    await person.post(MessageView("five"))
    assert [s.title for s in dingtalk.in_conversation("cidErrors01==")] == ["ℹ️ four"]  # noqa: RUF001
    assert [s.title for s in dingtalk.in_conversation(dingtalk.private_chat("erin05"))] == [
        "ℹ️ five"  # noqa: RUF001
    ]
    nobody = await adapter.open_private("")
    with pytest.raises(Undeliverable):
        await nobody.post(MessageView("six"))
    wrong = DingTalkAdapter(client_id=CLIENT_ID, client_secret="wrong", api_url=dingtalk.url)
    with pytest.raises(Undeliverable, match="credentials"):
        await (await wrong.open_chat("cidErrors01==")).post(MessageView("seven"))


async def test_a_disconnect_is_reconnected_and_pings_are_answered(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's ``ping`` is answered with its data (quietly: the SDK warns of every one);
    its ``disconnect`` closes the socket and the SDK opens a new connection, which goes on
    answering."""
    caplog.set_level(logging.INFO)
    recorder = Recorder([])
    adapter = settings_for(dingtalk).build()
    async with serving(adapter, recorder, dingtalk):
        ping = dingtalk.system("ping", {"opaque": "4711"})
        acked = await until(dingtalk, lambda: dingtalk.acked(ping))
        assert json.loads(acked["data"]) == {"opaque": "4711"}
        opened = len(dingtalk.opened)
        dingtalk.system("disconnect")
        await until(dingtalk, lambda: len(dingtalk.opened) > opened and dingtalk.connections())
        dingtalk.push(MESSAGES_TOPIC, dingtalk.message("cidAgain001==", ALICE, "/help"))
        await until(dingtalk, lambda: dingtalk.in_conversation("cidAgain001=="))
    assert [i.text for i, _ in recorder.seen] == ["/help"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_check_asks_for_the_access_token_once(dingtalk: FakeDingTalk) -> None:
    tokens = len(dingtalk.of("/v1.0/oauth2/accessToken"))
    assert await settings_for(dingtalk).check() == f"app {CLIENT_ID} (stream mode, messages)"
    assert len(dingtalk.of("/v1.0/oauth2/accessToken")) == tokens + 1
    wrong = settings_for(dingtalk, client_secret=SecretStr("not-the-secret"))
    with pytest.raises(ConfigurationError, match="DingTalk refused DINGTALK_CLIENT_ID and "):
        await wrong.check()
    gone = settings_for(dingtalk, api_url=f"http://127.0.0.1:{lab_module.free_port()}")
    with pytest.raises(ConfigurationError, match=r"did not answer .*check DINGTALK_API_URL"):
        await gone.check()


async def test_a_refused_secret_stops_serving_with_one_sentence(dingtalk: FakeDingTalk) -> None:
    adapter = settings_for(dingtalk, client_secret=SecretStr("not-the-secret")).build()
    with pytest.raises(ConfigurationError, match="check the app's credentials"):
        await adapter.serve(Recorder([]))


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"DINGTALK_MODE": "websocket"}, "DINGTALK_MODE: Input should be 'stream' or 'http'."),
        ({"DINGTALK_PORT": "70000"}, "DINGTALK_PORT: Input should be less than or equal to"),
        ({"DINGTALK_API_URL": "api.dingtalk.com"}, "DINGTALK_API_URL: 'api.dingtalk.com' is not"),
        ({"DINGTALK_CARD_TEMPLATE_ID": " "}, "DINGTALK_CARD_TEMPLATE_ID: is empty"),
    ],
)
def test_a_bad_setting_is_one_sentence_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], sentence: str
) -> None:
    monkeypatch.setenv("DINGTALK_CLIENT_ID", CLIENT_ID)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        plugin.configure()
    assert str(refused.value).startswith(sentence)


def test_settings_that_cannot_work_together_are_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DINGTALK_CLIENT_ID", CLIENT_ID)
    setup = plugin.configure()
    assert isinstance(setup, DingTalkSettings)
    with pytest.raises(ConfigurationError, match="DINGTALK_CLIENT_SECRET is not set"):
        setup.build()
    monkeypatch.setenv("DINGTALK_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("DINGTALK_MODE", "http")
    setup = plugin.configure()
    assert isinstance(setup, DingTalkSettings)
    with pytest.raises(ConfigurationError, match="DINGTALK_MODE is http, but DINGTALK_PORT"):
        setup.build()
    assert setup.secrets() == [CLIENT_SECRET]


# -- text out ----------------------------------------------------------------------------------


def test_markdown_escapes_what_is_echoed_and_keeps_code_and_commands() -> None:
    view = MessageView(
        "Job ab12cd: done",
        Tone.SUCCESS,
        rows=(Row("gcr.io/a_b/c:1", "done", detail="see [here](http://x) <b>bold</b>"),),
        lines=("read `*nginx*` as `nginx`",),
        code=("docker pull a_b && docker tag a_b c",),
        actions=(Action("ab12cd.retry.0", "Retry", "/mirror x --platform linux/amd64"),),
    )
    text = dingtalk_text.markdown(view)
    assert text.startswith("**✅ Job ab12cd: done**")
    assert "`gcr.io/a_b/c:1` — done" in text
    assert r"see \[here\](http://x) \<b\>bold\</b\>" in text
    assert "read `*nginx*` as `nginx`" in text  # a backtick span is code, left as it is
    assert "```\ndocker pull a_b && docker tag a_b c\n```" in text
    assert r"\[Retry\] type: `/mirror x --platform linux/amd64`" in text
    notify = replace(view, notify=True)
    assert dingtalk_text.markdown(notify, mention=ALICE).startswith(f"@{ALICE} **")
    params = dingtalk_text.card_params(view)
    assert json.loads(params["buttons"]) == [
        {"id": "ab12cd.retry.0", "label": "Retry", "style": "default"}
    ]
    assert "type:" not in params["content"] and params["tone"] == "success"


def test_a_long_answer_is_cut_between_lines_with_its_code_block_closed() -> None:
    view = MessageView("Job x", code=tuple(f"docker pull image-{n}:1.0" for n in range(2000)))
    text = dingtalk_text.markdown(view)
    assert len(text.encode()) <= dingtalk_text.LIMIT
    assert text.endswith("```\n…") and text.count("```") == 2


# -- mirror-bot run ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_bot(env: dict[str, str], log: Path) -> AsyncIterator[None]:
    """``mirror-bot run`` until the block ends, then SIGTERM: it must stop cleanly (the SDK's
    client swallows cancellation) and quietly, and never print the secret."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            MIRROR_BOT, "run", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
        try:
            yield
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output and CLIENT_SECRET not in output, output
    assert "unknown message topic" not in output and "ticket" not in output, output


def run_env(lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk, **more: str) -> dict[str, str]:
    return bot_env(
        lab,
        tmp_path / "mirror.db",
        MIRROR_ENGINE="registry",
        MIRROR_TARGET=f"{lab.target}/dt{uuid.uuid4().hex[:8]}",
        DINGTALK_CLIENT_ID=CLIENT_ID,
        DINGTALK_CLIENT_SECRET=CLIENT_SECRET,
        DINGTALK_API_URL=fake.url,
        NO_PROXY="127.0.0.1,localhost",
        **more,
    )


async def test_mirror_bot_run_finishes_an_interrupted_job_in_the_same_card(
    lab: lab_module.Lab, tmp_path: Path, fake: FakeDingTalk
) -> None:
    """Stream mode, the whole program: stopped by SIGTERM mid-copy, started again, it updates
    the same card and answers in the same group."""
    repository = fresh_image(lab, "run", size=4 << 20)
    with throttled(lab.source, rate=600_000) as slow:
        env = run_env(
            lab,
            tmp_path,
            fake,
            DINGTALK_CARD_TEMPLATE_ID=TEMPLATE,
            MIRROR_ALLOWED_SOURCES=slow.address,
            MIRROR_INSECURE_REGISTRIES=f"{slow.address},{lab.target}",
        )
        async with running_bot(env, tmp_path / "first.log"):
            await until(fake, fake.connections)
            fake.push(
                MESSAGES_TOPIC,
                fake.message(GROUP, ALICE, f"mirror {slow.address}/{repository}:1.0"),
            )
            [ack] = await until(fake, lambda: fake.in_conversation(GROUP))
            card = fake.card_of(ack)
            await until(fake, lambda: any(" MB / " in p["content"] for p in card.params))
        await until(fake, lambda: fake.connections() == 0)
        updates = len(card.params)
        async with running_bot(env, tmp_path / "second.log"):
            _, answer = await until(fake, lambda: _two(fake.in_conversation(GROUP)), timeout=120)
    assert len(card.params) > updates and "done (1/1 ready)" in card.now["title"]
    assert answer.kind == "card" and "docker pull" in answer.text and repository in answer.text


GROUPS = ("cidLoadGroupOne==", "cidLoadGroupTwo==")


@pytest.mark.timeout(400)
async def test_thirty_requests_at_once_are_all_answered_and_nothing_is_refused(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """Fifteen people in each of two groups ask at once, against a DingTalk that allows 20
    messages a minute per conversation: thirty messages each group, more than a minute's worth.
    Every request gets its acknowledgement and its answer in its own group, and no call is
    refused: the bot spread them over the minutes."""
    fake = FakeDingTalk(enforce=True).start()
    try:
        env = run_env(lab, tmp_path, fake)
        image = f"{lab.source}/library/hello:1.0"
        assert run_mirror(env, image).returncode == 0  # the cheap path: already mirrored
        async with running_bot(env, tmp_path / "bot.log"):
            await until(fake, fake.connections)
            for n in range(30):
                message = fake.message(GROUPS[n % 2], f"member{n}", f"mirror {image}")
                fake.push(MESSAGES_TOPIC, message)

            def answered() -> bool:
                return [len(fake.in_conversation(group)) for group in GROUPS] == [30, 30]

            await until(fake, answered, timeout=300)
    finally:
        fake.stop()
    for group in GROUPS:
        sent = fake.in_conversation(group)
        assert len([s for s in sent if "docker pull" in s.text]) == 15
        assert len([s for s in sent if "mirroring 1 image" in s.title]) == 15
    assert fake.refused == 0


@pytest.mark.slow
def test_without_the_extra_the_adapter_loads_and_configured_says_what_to_install(
    tmp_path: Path,
) -> None:
    """The module imports no SDK (every installed adapter is loaded to read its settings); set
    up without dingtalk-stream, the start stops with one sentence naming the pip install."""
    script = (
        "import sys\n"
        "sys.modules['dingtalk_stream'] = None  # as if the extra were not installed\n"
        "from bot.chat import ConfigurationError\n"
        "from bot.plugins import configured_adapters\n"
        "try:\n"
        "    configured_adapters()\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = clean_env(tmp_path / "m.db", DINGTALK_CLIENT_ID=CLIENT_ID)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == (
        "DINGTALK_CLIENT_ID is set, but the chat SDK it needs (dingtalk_stream) is not "
        "installed: run pip install 'hub-mirror-bot[dingtalk]'."
    ), done.stderr


def test_dingtalk_text_becomes_the_grammar() -> None:
    assert dingtalk_text.command_text(" mirror nginx:1.25") == "mirror nginx:1.25"
    assert dingtalk_text.command_text("@bob\u3000@carol /mirror a b") == "/mirror a b"
    assert dingtalk_text.command_text("mirror a@sha256:ab") == "mirror a@sha256:ab"


def test_the_sdks_badly_formatted_log_lines_cannot_end_its_client() -> None:
    """dingtalk-stream's ``start()`` logs ``logger.exception('unknown exception', e)`` when a
    connection fails in a way it did not foresee: an argument without a placeholder. Under a
    handler that formats in a filter (ours redacts secrets), the TypeError would escape the
    logging call and end the client; its records are made safe first, and one line."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactSecrets([CLIENT_SECRET]))
    SDK_LOG.addHandler(handler)
    try:
        try:
            raise OSError("the gateway went away")
        except OSError as exc:
            SDK_LOG.exception("unknown exception", exc)  # as start() does
    finally:
        SDK_LOG.removeHandler(handler)
    assert out.getvalue() == "unknown exception: (OSError('the gateway went away'),) (OSError)\n"
