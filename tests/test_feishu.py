"""The Feishu / Lark adapter: the real lark-oapi against a local Feishu, in process.

Only Feishu is replaced, by ``tests/support/fake_feishu.py``, which speaks the Open API over
HTTP and the long connection's protobuf frames. The adapter serves in the test's own loop as
``mirror-bot run`` would serve it (the SDK's socket in its thread, events bridged to this loop),
first with a recorder for the adapter's own rules, then with the whole bot against the lab.
``tests/test_feishu_run.py`` runs ``mirror-bot run`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import lab as lab_module
from adapters import feishu_card
from adapters.feishu import FeishuAdapter, FeishuSettings, parse_ref
from bot.app import MirrorBot
from bot.chat import (
    Addressable,
    ConfigurationError,
    Conversation,
    Handler,
    Incoming,
    RateLimited,
    Undeliverable,
)
from bot.plugins import read_settings
from bot.runtime import open_runtime
from bot.settings import Settings
from bot.view import Action, MessageView, Style, Tone
from tests.support.fake_feishu import (
    APP_ID,
    APP_SECRET,
    OTHER_TENANT,
    FakeFeishu,
    Message,
    card_action_event,
    card_buttons,
    card_text,
    post_event,
)
from tests.support.throttle import throttled

ALICE = "ou_a11ce000000000000000000000000001"
BOB = "ou_b0b00000000000000000000000000002"
GROUP = "oc_group00000000000000000000000001"
DM = "oc_p2p0000000000000000000000000001"
TOKEN = "verification-token-0123456789"
ENCRYPT_KEY = "encrypt-key-0123456789abcdef"


@pytest.fixture(scope="module")
def feishu() -> Iterator[FakeFeishu]:
    fake = FakeFeishu().start()
    yield fake
    fake.stop()


def settings(feishu: FakeFeishu, **more: Any) -> FeishuSettings:
    return FeishuSettings(
        _env_file=None,  # type: ignore[call-arg]
        app_id=APP_ID,
        app_secret=SecretStr(APP_SECRET),
        domain=feishu.url,
        **more,
    )


@dataclass
class Recorder:
    """The bot's side of the port: what it was handed, answered with one card each."""

    seen: list[Incoming] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)

    async def __call__(self, incoming: Incoming, conversation: Conversation) -> None:
        self.seen.append(incoming)
        self.conversations.append(conversation)
        if incoming.press is not None:
            await incoming.press.answer_privately(f"pressed {incoming.press.action_id}")
            return
        await conversation.post(MessageView(f"answer {len(self.seen)}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(
    feishu: FakeFeishu, adapter: FeishuAdapter, handler: Handler
) -> AsyncIterator[FeishuAdapter]:
    """``adapter.serve(handler)`` until the block ends; in ws mode, once it is connected."""
    feishu.reset()
    task = asyncio.create_task(adapter.serve(handler))
    try:
        if adapter.mode == "ws":
            await feishu.until(lambda: feishu.connected() or task.done())
        else:
            await until_listening(adapter, task)
        assert not task.done(), task.exception()
        yield adapter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await feishu.until(lambda: not feishu.connected())


async def until_listening(adapter: FeishuAdapter, task: asyncio.Task[None]) -> None:
    port = adapter._port
    async with asyncio.timeout(30):
        while not task.done():
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def replied(feishu: FakeFeishu, message_id: str, count: int = 1) -> list[Any]:
    return list(await feishu.until(lambda: len(feishu.replies_to(message_id)) >= count and
                                   feishu.replies_to(message_id)))  # fmt: skip


# -- the adapter's rules, over the long connection ----------------------------------------------


async def test_a_private_message_is_a_command_answered_with_a_reply_card(
    feishu: FakeFeishu,
) -> None:
    recorder = Recorder()
    adapter = settings(feishu).build()
    async with serving(feishu, adapter, recorder):
        event, request = feishu.message("/mirror nginx", sender=ALICE, chat_id=DM)
        frame = feishu.push(event)
        [answer] = await replied(feishu, request)
        await feishu.until(lambda: frame in feishu.answers)
    [incoming] = recorder.seen
    assert (incoming.platform, incoming.user_id, incoming.chat_id) == ("feishu", ALICE, DM)
    assert incoming.text == "/mirror nginx" and not incoming.is_group
    assert not incoming.closed_by_default  # one of the app's own tenant
    assert answer.chat_id == DM and not answer.in_thread
    assert "answer 1" in card_text(answer.card)
    assert feishu.answers[frame]["code"] == 200  # the SDK acknowledged the frame
    assert adapter.bot_open_id is not None  # from bot/v3/info


async def test_in_a_group_only_a_mention_of_the_bot_counts_and_threads_are_kept(
    feishu: FakeFeishu,
) -> None:
    recorder = Recorder()
    async with serving(feishu, settings(feishu).build(), recorder):
        chatter, _ = feishu.message("lunch?", sender=ALICE, chat_id=GROUP, group=True,
                                    mention_bot=False)  # fmt: skip
        feishu.push(chatter)
        event, request = feishu.message(
            "@bot /status", sender=BOB, chat_id=GROUP, group=True, thread_id="omt_1"
        )
        feishu.push(event)
        [answer] = await replied(feishu, request)
    assert [i.text for i in recorder.seen] == ["/status"]
    assert recorder.seen[0].is_group
    assert answer.in_thread  # the request was in a thread: so is the answer


async def test_an_event_delivered_twice_is_acted_on_once(feishu: FakeFeishu) -> None:
    recorder = Recorder()
    async with serving(feishu, settings(feishu).build(), recorder):
        event, request = feishu.message("/help", sender=ALICE, chat_id=DM, event_id="ev-twice")
        feishu.push(event)
        feishu.push(event)
        again, second = feishu.message("/status", sender=ALICE, chat_id=DM)
        feishu.push(again)
        await replied(feishu, second)
    assert [i.text for i in recorder.seen] == ["/help", "/status"]
    assert len(feishu.replies_to(request)) == 1


async def test_someone_from_another_tenant_is_closed_by_default(feishu: FakeFeishu) -> None:
    recorder = Recorder()
    async with serving(feishu, settings(feishu).build(), recorder):
        event, request = feishu.message(
            "@bot /mirror nginx", sender=BOB, chat_id=GROUP, group=True, tenant=OTHER_TENANT
        )
        feishu.push(event)
        await replied(feishu, request)
    assert recorder.seen[0].closed_by_default


async def test_a_button_press_comes_over_the_long_connection(feishu: FakeFeishu) -> None:
    recorder = Recorder()
    async with serving(feishu, settings(feishu).build(), recorder):
        card = "om_card0000001"
        value = {"id": "job1.cancel", "g": 1, "t": 0}
        press = card_action_event(presser=BOB, chat_id=GROUP, message_id=card, value=value)
        frame = feishu.push(press)
        await feishu.until(lambda: feishu.ephemerals)
        await feishu.until(lambda: frame in feishu.answers)
    [incoming] = recorder.seen
    assert incoming.press is not None and incoming.press.action_id == "job1.cancel"
    assert (incoming.user_id, incoming.chat_id, incoming.text) == (BOB, GROUP, "")
    [private] = feishu.ephemerals  # a refusal only the presser sees
    assert (private["chat_id"], private["open_id"]) == (GROUP, BOB)
    assert "pressed job1.cancel" in card_text(private["card"])
    assert feishu.answers[frame]["code"] == 200


async def test_wrong_credentials_stop_the_long_connection_with_one_sentence(
    feishu: FakeFeishu,
) -> None:
    adapter = FeishuSettings(
        _env_file=None,  # type: ignore[call-arg]
        app_id=APP_ID,
        app_secret=SecretStr("not-the-secret"),
        domain=feishu.url,
    ).build()
    with pytest.raises(ConfigurationError, match="Feishu refused"):
        await asyncio.wait_for(adapter.serve(Recorder()), 60)


# -- the port: replies, edits, rate limits, restarts ----------------------------------------


async def test_a_reply_is_patched_in_place_and_a_429_is_rate_limited(feishu: FakeFeishu) -> None:
    adapter = settings(feishu).build()
    _event, request = feishu.message("/mirror nginx", sender=ALICE, chat_id=DM)
    conversation, _reply = await adapter.reopen(f"{DM}:om_x:{request}:0:{ALICE}:0") or (None, None)
    assert conversation is not None
    buttons = (Action("j1.cancel", "Cancel", "/cancel j1", Style.DANGER),)
    reply = await conversation.post(MessageView("working", Tone.WORKING, actions=buttons))
    await reply.edit(MessageView("done", Tone.SUCCESS, code=("docker pull x",)))
    feishu.patch_429 = 1
    with pytest.raises(RateLimited) as limited:
        await reply.edit(MessageView("again"))
    assert limited.value.retry_after == 1.0
    [message] = feishu.replies_to(request)
    first, patched = message.cards
    assert card_buttons(first) == [("Cancel", {"g": 0, "t": 0, "id": "j1.cancel"})]
    assert card_buttons(patched) == []  # a view without buttons removes them
    assert "```bash\ndocker pull x\n```" in card_text(patched)
    # The ref is enough to edit the same card and answer the same request after a restart.
    where = parse_ref(reply.ref)
    assert where is not None and where.request_id == request and where.requester == ALICE
    _conversation, again = await adapter.reopen(reply.ref) or (None, None)
    assert again is not None and again.ref == reply.ref


async def test_check_is_one_call_for_the_tenant_token(feishu: FakeFeishu) -> None:
    feishu.reset()
    note = await settings(feishu).check()
    assert note == f"app {APP_ID} at {feishu.url} (ws mode)"
    assert [c.path for c in feishu.calls] == ["/open-apis/auth/v3/tenant_access_token/internal"]
    wrong = FeishuSettings(
        _env_file=None,  # type: ignore[call-arg]
        app_id=APP_ID,
        app_secret=SecretStr("wrong"),
        domain=feishu.url,
    )
    with pytest.raises(ConfigurationError, match="Feishu refused FEISHU_APP_ID"):
        await wrong.check()


def test_each_setting_is_checked_at_start_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FEISHU_APP_ID", "FEISHU_APP_SECRET", "FEISHU_MODE", "FEISHU_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env
    monkeypatch.setenv("FEISHU_APP_ID", APP_ID)
    with pytest.raises(ConfigurationError, match="FEISHU_APP_SECRET is not"):
        read_settings(FeishuSettings)
    monkeypatch.setenv("FEISHU_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("FEISHU_DOMAIN", "http://open.feishu.cn/open-apis")
    with pytest.raises(ConfigurationError, match=r"^FEISHU_DOMAIN: must be"):
        read_settings(FeishuSettings)
    monkeypatch.setenv("FEISHU_DOMAIN", "https://open.larksuite.com/")
    monkeypatch.setenv("FEISHU_MODE", "webhook")
    with pytest.raises(ConfigurationError, match=r"^FEISHU_MODE: Input should be 'ws' or 'http'"):
        read_settings(FeishuSettings)
    monkeypatch.setenv("FEISHU_MODE", "http")
    with pytest.raises(ConfigurationError, match="FEISHU_VERIFICATION_TOKEN is not set"):
        read_settings(FeishuSettings)
    monkeypatch.setenv("FEISHU_VERIFICATION_TOKEN", TOKEN)
    found = read_settings(FeishuSettings)
    assert found.domain == "https://open.larksuite.com"
    assert sorted(found.secrets()) == sorted([APP_SECRET, TOKEN])


# -- http mode: what the SDK's dispatcher checks ---------------------------------------------


async def test_http_mode_answers_verification_and_refuses_forged_events(
    feishu: FakeFeishu,
) -> None:
    port = free_port()
    recorder = Recorder()
    adapter = settings(
        feishu,
        mode="http",
        port=port,
        verification_token=SecretStr(TOKEN),
        encrypt_key=SecretStr(ENCRYPT_KEY),
    ).build()
    adapter._host = "127.0.0.1"
    url = f"http://127.0.0.1:{port}/feishu/events"

    def post(payload: dict[str, Any], **how: Any) -> tuple[int, dict[str, Any]]:
        return post_event(url, payload, **how)

    async with serving(feishu, adapter, recorder):
        challenge = {"challenge": "ch-123", "token": TOKEN, "type": "url_verification"}
        assert await asyncio.to_thread(post, challenge, encrypt_key=ENCRYPT_KEY) == (
            200,
            {"challenge": "ch-123"},
        )
        wrong, _ = feishu.message("/help", sender=ALICE, chat_id=DM, token="not-the-token")
        status, _body = await asyncio.to_thread(post, wrong, encrypt_key=ENCRYPT_KEY)
        assert status == 500
        forged, _ = feishu.message("/help", sender=ALICE, chat_id=DM, token=TOKEN)
        status, _body = await asyncio.to_thread(
            post, forged, encrypt_key=ENCRYPT_KEY, sign_key="another-key"
        )
        assert status == 500
        event, request = feishu.message("/status", sender=ALICE, chat_id=DM, token=TOKEN)
        assert (await asyncio.to_thread(post, event, encrypt_key=ENCRYPT_KEY))[0] == 200
        await replied(feishu, request)
        value = {"id": "j2.cancel", "g": 0, "t": 0}
        press = card_action_event(
            presser=ALICE, chat_id=DM, message_id="om_c2", value=value, token=TOKEN
        )
        assert (await asyncio.to_thread(post, press, encrypt_key=ENCRYPT_KEY))[0] == 200
        await feishu.until(lambda: [m for m in feishu.in_chat(DM) if m.parent_id is None])
    assert [i.text for i in recorder.seen] == ["/status", ""]
    private = [m for m in feishu.in_chat(DM) if m.parent_id is None]
    assert "pressed j2.cancel" in card_text(private[0].card)  # in a private chat: a message


def test_the_card_carries_both_languages_when_the_view_has_them() -> None:
    from bot.i18n import speaking
    from bot.view import translated

    def build() -> MessageView:
        from bot.i18n import _

        return MessageView(_("Cancel"), actions=(Action("a", _("Cancel"), "/cancel a"),))

    with speaking("en", readers=("en", "zh_Hans")):
        view = translated(build)
    card = feishu_card.single(view)
    assert set(card["i18n_elements"]) == {"en_us", "zh_cn"}
    assert card_buttons(card, "zh_cn") == [("取消", {"id": "a"})]
    assert card_buttons(card, "en_us") == [("Cancel", {"id": "a"})]
    assert json.dumps(card).count('"update_multi": true') == 1


# -- the whole bot, in process, against the lab -------------------------------------------------


def bot_settings(lab: lab_module.Lab, tmp_path: Path, *sources: str, **more: Any) -> Settings:
    """The bot's settings for the lab: a fresh target namespace, so nothing is mirrored yet."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=tmp_path / "bot.db",
        mirror_target=f"{lab.target}/fs{uuid.uuid4().hex[:8]}",
        mirror_engine="registry",
        mirror_allowed_sources=(lab.source, *sources),
        mirror_insecure_registries=(lab.source, lab.target, *sources),
        **more,
    )


@contextlib.asynccontextmanager
async def feishu_bot(
    feishu: FakeFeishu, settings: Settings, *, resume: bool = False
) -> AsyncIterator[MirrorBot]:
    """``mirror-bot run`` with the Feishu adapter, in this process: the bot, its recovery of
    interrupted jobs, and the adapter serving it over the long connection."""
    async with open_runtime(settings) as runtime, MirrorBot(
        settings, runtime.service, runtime.policy, runtime.planner, runtime.render_options
    ) as bot:  # fmt: skip
        adapter = FeishuSettings(
            _env_file=None,  # type: ignore[call-arg]
            app_id=APP_ID,
            app_secret=SecretStr(APP_SECRET),
            domain=feishu.url,
        ).build()
        resumed = await bot.recover({"feishu": adapter})
        assert resumed == (1 if resume else 0)
        async with serving(feishu, adapter, bot.handle):
            yield bot


def answers(feishu: FakeFeishu, request: str) -> list[Message]:
    """The cards replying to ``request`` that are not its acknowledgement (the first)."""
    return feishu.replies_to(request)[1:]


async def test_mirror_is_answered_in_place_with_progress_and_the_pull_command(
    lab: lab_module.Lab, feishu: FakeFeishu, tmp_path: Path
) -> None:
    settings = bot_settings(lab, tmp_path)
    image = f"{lab.source}/library/hello:1.0"
    async with feishu_bot(feishu, settings) as bot:
        event, request = feishu.message(f"/mirror {image}", sender=ALICE, chat_id=DM)
        feishu.push(event)
        [final] = await feishu.until(lambda: answers(feishu, request))
        await bot.drain(asyncio.Event())
    ack = feishu.replies_to(request)[0]
    # One card, edited in place: acknowledged, then done; the answer replies to the request.
    assert len(ack.cards) >= 2
    assert "mirroring" in card_text(ack.cards[0]) and "done" in card_text(ack.card)
    text = card_text(final.card)
    assert "```bash\ndocker pull " in text and f"docker tag {settings.mirror_target}" in text
    # Nobody chose a language and the operator pinned none: every card carries both, and
    # each reader's client shows their own.
    assert set(final.card["i18n_elements"]) == {"en_us", "zh_cn"}
    chinese = card_text(final.card, "zh_cn")
    assert "docker pull" in chinese and chinese != text
    assert not [c for c in feishu.calls if c.status != 200]


async def test_a_button_press_acts_for_its_owner_and_is_refused_privately_to_others(
    lab: lab_module.Lab, feishu: FakeFeishu, tmp_path: Path
) -> None:
    settings = bot_settings(lab, tmp_path)
    missing = f"{lab.source}/library/hello:9.9-missing"
    async with feishu_bot(feishu, settings) as bot:
        event, request = feishu.message(
            f"@bot /mirror {missing}", sender=ALICE, chat_id=GROUP, group=True
        )
        feishu.push(event)
        [final] = await feishu.until(lambda: answers(feishu, request))
        await bot.drain(asyncio.Event())
        [(label, value), *_] = card_buttons(final.card)
        assert value["g"] == 1

        def press(who: str) -> None:
            feishu.push(card_action_event(
                presser=who, chat_id=GROUP, message_id=final.message_id, value=value
            ))  # fmt: skip

        press(BOB)
        [refusal] = await feishu.until(lambda: feishu.ephemerals)
        assert refusal["open_id"] == BOB
        assert f"Only the requester (feishu:{ALICE})" in card_text(refusal["card"])
        assert feishu.replies_to(final.message_id) == []  # the chat saw nothing
        press(ALICE)
        [ack] = await feishu.until(lambda: feishu.replies_to(final.message_id))
        await bot.drain(asyncio.Event())
    assert label in ("Retry", "Mirror 1.0")
    assert "Job " in card_text(ack.cards[0])


async def test_a_stranger_from_another_tenant_is_refused_unless_allowed(
    lab: lab_module.Lab, feishu: FakeFeishu, tmp_path: Path
) -> None:
    image = f"{lab.source}/library/hello:1.0"
    async with feishu_bot(feishu, bot_settings(lab, tmp_path)):
        event, request = feishu.message(
            f"@bot /mirror {image}", sender=BOB, chat_id=GROUP, group=True, tenant=OTHER_TENANT
        )
        feishu.push(event)
        [refusal] = await replied(feishu, request)
    text = card_text(refusal.card)
    assert "not allowed" in text and f"feishu:{BOB} " in text and f"feishu:{GROUP})" in text
    assert "抱歉" in card_text(refusal.card, "zh_cn")  # the refusal in both languages too
    allowed = bot_settings(lab, tmp_path / "allowed", mirror_allowed_users=(f"feishu:{GROUP}",))
    (tmp_path / "allowed").mkdir()
    async with feishu_bot(feishu, allowed) as bot:
        event, request = feishu.message(
            f"@bot /mirror {image}", sender=BOB, chat_id=GROUP, group=True, tenant=OTHER_TENANT
        )
        feishu.push(event)
        await feishu.until(lambda: answers(feishu, request))
        await bot.drain(asyncio.Event())
    assert "docker pull" in card_text(answers(feishu, request)[0].card)


async def test_a_job_interrupted_by_a_restart_finishes_in_the_same_card(
    lab: lab_module.Lab, feishu: FakeFeishu, tmp_path: Path
) -> None:
    repository = f"library/feishu-restart-{uuid.uuid4().hex[:8]}"
    layers = [lab_module.LayerSpec(size << 20, uuid.uuid4().int % 10**9 + size) for size in (2, 4)]
    lab_module.push_image(lab.source, repository, "1.0", layers, cache_dir=tmp_path / "layers")
    with throttled(lab.source, 600_000) as relay:
        settings = bot_settings(lab, tmp_path, relay.address)
        async with feishu_bot(feishu, settings):
            event, request = feishu.message(
                f"/mirror {relay.address}/{repository}:1.0", sender=ALICE, chat_id=DM
            )
            feishu.push(event)
            [ack] = await replied(feishu, request)
            await feishu.until(lambda: any("%" in card_text(c) for c in ack.cards[1:]))
        seen = len(ack.cards)
        async with feishu_bot(feishu, settings, resume=True) as bot:
            [final] = await feishu.until(lambda: answers(feishu, request))
            await bot.drain(asyncio.Event())
    # The second bot went on patching the same card and answered the same request.
    assert len(ack.cards) > seen and "done" in card_text(ack.card)
    assert "docker pull" in card_text(final.card)
    assert [m.message_id for m in feishu.replies_to(request)] == [ack.message_id, final.message_id]


async def test_it_can_post_where_nobody_asked(feishu: FakeFeishu) -> None:
    """``Addressable``: a chat by its id (approvals), a person privately by their open_id."""
    adapter = settings(feishu).build()
    assert isinstance(adapter, Addressable)
    in_chat = await adapter.open_chat(GROUP)
    posted = await in_chat.post(MessageView("to the admins"))
    privately = await adapter.open_private(ALICE)
    reply = await privately.post(MessageView("a sign-in link"))
    await reply.edit(MessageView("used"))
    [chat_card] = [m for m in feishu.in_chat(GROUP) if m.parent_id is None]
    [private] = feishu.in_chat(f"oc_p2p_{ALICE}")
    assert "to the admins" in card_text(chat_card.card) and chat_card.parent_id is None
    titles = [card_text(c).splitlines()[0] for c in private.cards]
    assert [t.split(" ", 1)[1] for t in titles] == ["a sign-in link", "used"]
    assert parse_ref(posted.ref) is not None and reply.ref.startswith(f"oc_p2p_{ALICE}:")
    with pytest.raises(Undeliverable, match="not a Feishu open_id"):
        await adapter.open_private("alice")  # an id from another platform's allowlist


def test_an_install_that_does_not_use_feishu_does_not_import_its_sdk(tmp_path: Path) -> None:
    """Every installed adapter's module is loaded to read its settings: Feishu's must not pull
    in lark-oapi (seconds to import, 100 MB) unless it is configured."""
    probe = (
        "import sys\n"
        "from bot.plugins import configured_adapters\n"
        "print([c.name for c in configured_adapters()], 'lark_oapi' in sys.modules)\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "SLACK_", "TELEGRAM_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["['console']", "False"]


def test_a_long_answer_in_two_languages_is_cut_into_cards_that_say_so() -> None:
    """Forty images in English and Chinese do not fit in one card's 30 KB: the answer comes in
    parts, each saying which; an edit keeps what fits and says how much is left out."""
    from bot.i18n import speaking
    from bot.view import Row, translated

    def build() -> MessageView:
        from bot.i18n import _

        rows = tuple(
            Row(f"gcr.io/team/service-{n}:v1.2.{n}", _("done"), detail=_("Cancel") * 20)
            for n in range(40)
        )
        pulls = (
            "docker pull {target} && docker tag {target} {source}",
            "ctr -n k8s.io images pull {target} && ctr -n k8s.io images tag {target} {source}",
        )
        code = tuple(
            line.format(
                target=f"registry.example.com/team/gcr.io.team.service-{n}:v1.2.{n}",
                source=f"gcr.io/team/service-{n}:v1.2.{n}",
            )
            for n in range(40)
            for line in pulls
        )
        retry = (Action("j.retry.0", _("Retry"), "/mirror x"),)
        return MessageView(_("Cancel"), Tone.SUCCESS, rows=rows, code=code, actions=retry)

    with speaking("en", readers=("en", "zh_Hans")):
        view = translated(build)
    parts = feishu_card.parts(view)
    assert len(parts) >= 2
    assert all(feishu_card.size_of(card) <= feishu_card.LIMIT for card in parts)
    for n, card in enumerate(parts, start=1):
        assert f"Part {n} of {len(parts)}" in card_text(card)
        assert f"第 {n} 部分，共 {len(parts)} 部分" in card_text(card, "zh_cn")  # noqa: RUF001
        assert card_buttons(card) == ([] if n < len(parts) else [("Retry", {"id": "j.retry.0"})])
    shown = "".join(card_text(card) for card in parts)
    assert all(f"service-{n}:v1.2.{n}" in shown for n in range(40))  # nothing lost
    edit = feishu_card.single(view)
    assert feishu_card.size_of(edit) <= feishu_card.LIMIT
    assert "which do not fit in one card" in card_text(edit)
    assert card_buttons(edit) == [("Retry", {"id": "j.retry.0"})]  # an edit keeps its buttons
