"""The Telegram adapter end to end: ``mirror-bot run`` as a subprocess, the real
python-telegram-bot talking HTTP to a local Bot API server (``tests/support/fake_telegram.py``),
the real lab's Docker daemon and registries doing the copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import itertools
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

import lab as lab_module
from tests.support.cli import MIRROR_BOT, bot_env
from tests.support.docker_events import pulls_since
from tests.support.fake_telegram import BOT_USERNAME, Call, Chat, FakeTelegram
from tests.support.throttle import throttled

TOKEN = "123456:TEST-token-must-never-be-logged"
ALICE = 42  # allowed by user id
TEAM = Chat(-100777, "supergroup", "team")  # allowed as a chat
BOB = 555  # a member of TEAM, not allowed on his own
STRANGER = 777
TOLERANCE = 0.1  # seconds: the server's clock sees edits a little later or earlier than sent


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(TOKEN).start()
    yield fake
    await fake.close()


@pytest.fixture
def env(lab: lab_module.Lab, tmp_path: Path, telegram: FakeTelegram) -> dict[str, str]:
    """The bot's settings: a fresh target namespace per test, so nothing is already mirrored."""
    return bot_env(
        lab,
        tmp_path / "mirror.db",
        MIRROR_ENGINE="docker",
        MIRROR_TARGET=f"{lab.target}/tg{uuid.uuid4().hex[:8]}",
        MIRROR_ALLOWED_USERS=f"telegram:{ALICE} telegram:{TEAM.id}",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram.url,
        NO_PROXY="127.0.0.1,localhost",
    )


@asynccontextmanager
async def running_bot(env: dict[str, str], log: Path) -> AsyncIterator[None]:
    """``mirror-bot run`` until the block ends, then SIGTERM; it must stop cleanly and quietly."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            MIRROR_BOT, "run", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
        try:
            yield
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert TOKEN not in output and TOKEN.split(":")[1] not in output


async def polling(telegram: FakeTelegram) -> None:
    await telegram.wait_for(lambda: telegram.ok("getUpdates"))


def pre_blocks(text: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", text, re.S)]


def final_answer(telegram: FakeTelegram, request_id: int) -> Call | None:
    """The reply to a request with the commands to paste, as it reads now: a new message, or
    the acknowledgement that became the answer (its last edit)."""
    states = [telegram.state(c) for c in telegram.replies_to(request_id)]
    return next((c for c in states if "<pre>" in c.text), None)


def gaps(calls: list[Call]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(calls)]


def fresh_image(lab: lab_module.Lab, cache: Path, name: str) -> str:
    """A 6 MiB image no daemon has seen (random seeds), so its pull really crosses the relay."""
    seed = uuid.uuid4().int % 10**9
    layers = [lab_module.LayerSpec(size << 20, seed + size) for size in (1, 2, 3)]
    repository = f"library/{name}-{seed}"
    lab_module.push_image(lab.source, repository, "1.0", layers, cache_dir=cache)
    return repository


def expected_pull(target_base: str, source: str, repository: str, tag: str) -> str:
    name = f"{target_base}/{source.replace(':', '-')}.{repository.replace('/', '.')}:{tag}"
    return f"docker pull {name} && docker tag {name} {source}/{repository}:{tag}"


async def test_private_chat_progress_is_edited_under_the_flood_limit_then_answered(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    # A relay at 1 MB/s per connection makes the 6 MiB pull last a few seconds: several edits.
    repository = fresh_image(lab, tmp_path / "layers", "progress")
    with throttled(lab.source, 1_000_000) as relay:
        env = env | {
            "MIRROR_ALLOWED_SOURCES": relay.address,
            "MIRROR_INSECURE_REGISTRIES": f"{relay.address},{lab.target}",
        }
        chat = Chat(ALICE)
        async with running_bot(env, tmp_path / "bot.log"):
            await polling(telegram)
            request = telegram.send(chat, ALICE, f"/mirror {relay.address}/{repository}:1.0")
            final = await telegram.wait_for(lambda: final_answer(telegram, request))
            history = telegram.send(chat, ALICE, "/history")
            [listed] = await telegram.wait_for(lambda: telegram.replies_to(history))

    ack, *_ = telegram.replies_to(request)
    assert ack.text.startswith("⏳") and f"{repository}:1.0" in ack.text
    assert ack.params["parse_mode"] == "HTML"
    assert ack.message_id is not None
    edits = telegram.edits_of(ALICE, ack.message_id)
    assert any("copying" in e.text and "%" in e.text for e in edits), [e.text for e in edits]
    assert len(edits) >= 3
    assert all(gap >= 1.0 - TOLERANCE for gap in gaps([ack, *edits])), gaps([ack, *edits])
    assert "done" in edits[-1].text

    [block] = pre_blocks(final.text)
    pull = expected_pull(env["MIRROR_TARGET"], relay.address, repository, "1.0")
    assert block.splitlines()[0] == pull
    assert block.splitlines()[1].startswith("ctr -n k8s.io images pull --plain-http ")
    assert re.search(r"sha256:[0-9a-f]{64}", final.text)
    target = env["MIRROR_TARGET"].removeprefix(f"{lab.target}/")
    flat = f"{relay.address.replace(':', '-')}.{repository.replace('/', '.')}"
    raw, _ = lab_module.pull_manifest(lab.target, f"{target}/{flat}", "1.0")
    assert raw
    assert f"{target}/{flat}:1.0" in listed.text


async def test_group_answers_its_own_commands_only_every_three_seconds(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    env = env | {"MIRROR_LONG_JOB_SECONDS": "0"}  # every job is "long": the answer mentions
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        ignored = [
            telegram.send(TEAM, BOB, "good morning"),
            telegram.send(TEAM, BOB, f"/mirror@OtherBot {lab.source}/library/hello:1.0"),
            telegram.send(TEAM, BOB, "/weather"),
        ]
        request = telegram.send(TEAM, BOB, f"/mirror@{BOT_USERNAME} {lab.source}/library/hello:1.0")
        final = await telegram.wait_for(lambda: final_answer(telegram, request))

    assert all(telegram.replies_to(i) == [] for i in ignored)
    ack = telegram.replies_to(request)[0]
    assert ack.chat_id == TEAM.id and ack.message_id is not None
    edits = telegram.edits_of(TEAM.id, ack.message_id)
    assert edits
    assert all(gap >= 3.0 - TOLERANCE for gap in gaps([ack, *edits])), gaps([ack, *edits])
    [block] = pre_blocks(final.text)
    assert block.splitlines()[0] == expected_pull(
        env["MIRROR_TARGET"], lab.source, "library/hello", "1.0"
    )
    assert final.text.startswith(f'<a href="tg://user?id={BOB}">user{BOB}</a> ✅')


async def test_a_stranger_is_refused_with_their_id_and_nothing_is_pulled(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    started = time.time_ns()
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        request = telegram.send(Chat(STRANGER), STRANGER, f"/mirror {lab.source}/library/hello:1.0")
        [refusal] = await telegram.wait_for(lambda: telegram.replies_to(request))
    pulls = pulls_since(lab.docker_host, started)
    assert f"telegram:{STRANGER}" in refusal.text
    assert "not allowed" in refusal.text
    assert telegram.ok("editMessageText") == []
    assert len(telegram.ok("sendMessage")) == 1
    assert pulls == []


async def test_start_up_registers_the_menu_in_english_and_chinese(
    env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
    calls = telegram.ok("setMyCommands")
    menus = {c.params.get("language_code"): c.value("commands") for c in calls}
    assert set(menus) == {None, "zh"}
    for commands in menus.values():
        assert [c["command"] for c in commands] == [
            "mirror",
            "tags",
            "inspect",
            "status",
            "history",
            "cancel",
            "quota",
            "sources",
            "watch",
            "watches",
            "unwatch",
            "pin",
            "unpin",
            "lang",
            "help",
        ]
    assert telegram.ok("deleteWebhook")  # polling starts by removing any webhook, as PTB does


async def test_a_document_is_read_as_if_pasted_and_answered_with_its_rewrite(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    image = f"{lab.source}/library/hello:1.0"
    compose = f"services:\n  web:\n    image: {image}\n  db:\n    build: .\n".encode()
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        # A private chat needs no caption; a group needs /mirror as the caption.
        request = telegram.send_document(Chat(ALICE), ALICE, "compose.yaml", compose)
        final = await telegram.wait_for(lambda: final_answer(telegram, request))
        ignored = telegram.send_document(TEAM, BOB, "notes.txt", b"nginx", caption="look")
        grouped = telegram.send_document(
            TEAM, BOB, "images.txt", f"{image}\n".encode(), caption=f"/mirror@{BOT_USERNAME}"
        )
        await telegram.wait_for(lambda: final_answer(telegram, grouped))
        too_big = telegram.send_document(
            Chat(ALICE), ALICE, "huge.yaml", b"x", caption="/mirror", size=300_000
        )
        [over] = await telegram.wait_for(lambda: telegram.replies_to(too_big))
        binary = telegram.send_document(Chat(ALICE), ALICE, "a.bin", b"\x00\x01\xff")
        [refused] = await telegram.wait_for(lambda: telegram.replies_to(binary))

    block = "\n".join(pre_blocks(final.text))
    pull = expected_pull(env["MIRROR_TARGET"], lab.source, "library/hello", "1.0")
    assert pull in block
    assert f"- name: {lab.source}/library/hello" in block  # the kustomize rewrite
    assert "# or apply this, rewritten:" in block
    assert telegram.replies_to(ignored) == []
    assert "KB; I read shared files of up to 256 KB." in over.text
    assert "not a text file" in refused.text
    # Downloaded with the bot's token: the compose file, the group's list, the binary file;
    # never the one over the cap nor the group chatter.
    assert telegram.downloads == [f"documents/F000{n}.txt" for n in (1, 3, 5)]


async def test_a_watch_tells_its_chat_when_the_tag_moves_also_after_a_restart(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    repository = f"library/tgwatch-{uuid.uuid4().hex[:8]}"
    layers = [lab_module.LayerSpec(4096, uuid.uuid4().int % 10**9)]
    lab_module.push_image(lab.source, repository, "1.0", layers)
    env = env | {"MIRROR_WATCH_INTERVAL": "1s", "MIRROR_ENGINE": "registry"}
    chat = Chat(ALICE)

    def answers(request: int) -> list[Call]:
        states = [telegram.state(c) for c in telegram.replies_to(request)]
        return [c for c in states if "<pre>" in c.text]

    def moved(seed: int) -> str:
        spec = [lab_module.LayerSpec(4096, seed)]
        return lab_module.push_image(lab.source, repository, "1.0", spec)

    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        request = telegram.send(chat, ALICE, f"/watch {lab.source}/{repository}:1.0")
        await telegram.wait_for(lambda: answers(request)[:1])  # mirrored now
        first = moved(uuid.uuid4().int % 10**9)
        second = await telegram.wait_for(lambda: answers(request)[1:2])
    async with running_bot(env, tmp_path / "bot2.log"):
        await polling(telegram)
        again = moved(uuid.uuid4().int % 10**9)
        third = await telegram.wait_for(lambda: answers(request)[2:3])

    started, *_ = telegram.replies_to(request)
    assert "Watch" in started.text and "changes of" in started.text
    pull = expected_pull(env["MIRROR_TARGET"], lab.source, repository, "1.0")
    for [answer], digest in ((second, first), (third, again)):
        assert "moved upstream" in answer.text
        assert digest in answer.text and "digest identical to the source" in answer.text
        assert pull in "\n".join(pre_blocks(answer.text))
    target = env["MIRROR_TARGET"].removeprefix(f"{lab.target}/")
    flat = f"{lab.source.replace(':', '-')}.{repository.replace('/', '.')}"
    raw, _ = lab_module.pull_manifest(lab.target, f"{target}/{flat}", "1.0")
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == again


async def test_html_in_a_message_is_escaped(
    env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        request = telegram.send(Chat(ALICE), ALICE, "/mirror <b>evil</b>:1")
        [answer] = await telegram.wait_for(lambda: telegram.replies_to(request))
    assert "&lt;b&gt;evil&lt;/b&gt;" in answer.text
    assert "<b>evil" not in answer.text
    assert "not a valid image reference" in answer.text


async def test_a_429_storm_is_waited_out_and_the_answer_still_arrives(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    lab_module.push_image(lab.source, "library/storm", "1.0", lab_module.HELLO_LAYERS)
    env = env | {"MIRROR_LONG_JOB_SECONDS": "0"}  # a "long" job: its answer is a new message
    telegram.rate_limit("editMessageText", 3, retry_after=1)
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        request = telegram.send(Chat(ALICE), ALICE, f"/mirror {lab.source}/library/storm:1.0")
        await telegram.wait_for(
            lambda: [c for c in telegram.calls if c.status == 429 and c.method == "editMessageText"]
        )
        telegram.rate_limit("sendMessage", 2, retry_after=1)
        final = await telegram.wait_for(lambda: final_answer(telegram, request))

    limited = [c for c in telegram.calls if c.status == 429]
    assert [c.method for c in limited].count("editMessageText") == 3
    assert [c.method for c in limited].count("sendMessage") == 2
    for rejected in limited:  # every retry came after the time Telegram asked for
        after = [c for c in telegram.calls if c.method == rejected.method and c.at > rejected.at]
        retry = after[0]
        assert retry.at - rejected.at >= 1.0 - TOLERANCE
    ack = telegram.replies_to(request)[0]
    assert ack.message_id is not None
    assert "done" in telegram.edits_of(ALICE, ack.message_id)[-1].text
    assert pre_blocks(final.text)[0].startswith("docker pull ")


async def listening(port: int) -> None:
    """Until ``port`` accepts connections: PTB calls ``setWebhook`` before its server listens
    (Telegram itself retries a webhook it cannot reach)."""
    async with asyncio.timeout(60):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def test_webhook_mode_needs_the_secret_header(
    env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    port = lab_module.free_port()
    secret = "s3cret_Token-" + uuid.uuid4().hex
    env = env | {
        "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/hook",
        "TELEGRAM_WEBHOOK_SECRET": secret,
        "TELEGRAM_WEBHOOK_PORT": str(port),
        "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1",
    }
    hook = f"http://127.0.0.1:{port}/telegram/hook"
    async with running_bot(env, tmp_path / "bot.log"), aiohttp.ClientSession() as http:
        [registered] = await telegram.wait_for(lambda: telegram.ok("setWebhook"))
        assert registered.params["url"] == hook
        assert registered.params["secret_token"] == secret
        await listening(port)
        statuses = []
        refused = []
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
            update = telegram.message(Chat(ALICE), ALICE, "/help")
            refused.append(update["message"]["message_id"])
            async with http.post(hook, json=update, headers=headers) as response:
                statuses.append(response.status)
        update = telegram.message(Chat(ALICE), ALICE, "/help")
        accepted = update["message"]["message_id"]
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with http.post(hook, json=update, headers=headers) as response:
            statuses.append(response.status)
        [answer] = await telegram.wait_for(lambda: telegram.replies_to(accepted))
    assert statuses == [403, 403, 200]
    assert "/mirror" in answer.text
    assert all(telegram.replies_to(r) == [] for r in refused)
    assert len(telegram.ok("sendMessage")) == 1
    assert telegram.ok("getUpdates") == []


def test_webhook_without_a_secret_refuses_to_start(env: dict[str, str]) -> None:
    env = env | {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook"}
    done = subprocess.run(
        [MIRROR_BOT, "run"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "TELEGRAM_WEBHOOK_SECRET is not" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_job_interrupted_by_a_restart_finishes_in_the_same_message(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    repository = fresh_image(lab, tmp_path / "layers", "restart")
    with throttled(lab.source, 600_000) as relay:
        env = env | {
            "MIRROR_ALLOWED_SOURCES": relay.address,
            "MIRROR_INSECURE_REGISTRIES": f"{relay.address},{lab.target}",
        }
        chat = Chat(ALICE)
        async with running_bot(env, tmp_path / "first.log"):
            await polling(telegram)
            request = telegram.send(chat, ALICE, f"/mirror {relay.address}/{repository}:1.0")
            [ack] = await telegram.wait_for(lambda: telegram.replies_to(request))
            assert ack.message_id is not None
            await telegram.wait_for(
                lambda: [e for e in telegram.edits_of(ALICE, ack.message_id) if "%" in e.text]
            )
        stopped = len(telegram.calls)
        async with running_bot(env, tmp_path / "second.log"):
            final = await telegram.wait_for(lambda: final_answer(telegram, request))
    later = telegram.calls[stopped:]
    # The second process found the job in its database and went on in the same message,
    # replying to the same command; it did not take the command a second time.
    assert [c for c in later if c.method == "editMessageText"]
    assert all(
        int(c.params["message_id"]) == ack.message_id
        for c in later
        if c.method == "editMessageText"
    )
    assert "done" in telegram.edits_of(ALICE, ack.message_id)[-1].text
    assert [c for c in later if c.method == "sendMessage"] == [final]


async def test_a_rejected_token_stops_the_bot_with_one_sentence(
    env: dict[str, str], telegram: FakeTelegram
) -> None:
    wrong = "999999:not-the-token-of-this-bot"
    env = env | {"TELEGRAM_BOT_TOKEN": wrong}
    proc = await asyncio.create_subprocess_exec(
        MIRROR_BOT, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    output = (out + err).decode()
    assert proc.returncode == 2
    assert f"The Bot API server at {telegram.url} rejected TELEGRAM_BOT_TOKEN" in output
    assert "Traceback" not in output
    assert wrong.split(":")[1] not in output


def buttons_of(telegram: FakeTelegram, request_id: int) -> list[tuple[Call, str, str]]:
    """Every button the bot's replies to ``request_id`` carry now: (message as sent, label,
    callback data)."""
    return [
        (call, label, data)
        for call in telegram.replies_to(request_id)
        for label, data in telegram.buttons(telegram.state(call))
    ]


async def test_retry_button_acts_once_for_its_owner_even_after_a_restart(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    """A failed image gets Retry. Another member of the group pressing it is told privately
    and nothing is sent; the requester pressing it after a restart starts the copy again (the
    image exists by then); a second press is answered privately and does nothing."""
    repository = f"library/retry-{uuid.uuid4().hex[:8]}"
    async with running_bot(env, tmp_path / "bot1.log"):
        await polling(telegram)
        request = telegram.send(TEAM, ALICE, f"/mirror {lab.source}/{repository}:1.0")
        [(answer, label, data)] = await telegram.wait_for(
            lambda: [b for b in buttons_of(telegram, request) if b[1] != "Cancel"]
        )
        assert telegram.state(answer).text.startswith("❌") and label == "Retry"
        assert len(data.encode()) <= 64
        assert answer.message_id is not None
        sent_before = len(telegram.ok("sendMessage"))
        stranger = telegram.press(TEAM, BOB, answer.message_id, data)
        [refusal] = await telegram.wait_for(lambda: telegram.answers_to(stranger))
        unknown = telegram.press(TEAM, ALICE, answer.message_id, "not-a-button")
        [puzzled] = await telegram.wait_for(lambda: telegram.answers_to(unknown))
        assert len(telegram.ok("sendMessage")) == sent_before
    assert (
        f"telegram:{ALICE}" in refusal.params["text"]
        and "nothing was done" in refusal.params["text"]
    )
    assert refusal.params["show_alert"] == "true"
    assert "do not know this button" in puzzled.params["text"]

    layers = [lab_module.LayerSpec(1 << 20, uuid.uuid4().int % 10**9)]
    lab_module.push_image(lab.source, repository, "1.0", layers, cache_dir=tmp_path / "layers")
    async with running_bot(env, tmp_path / "bot2.log"):
        await polling(telegram)
        owner = telegram.press(TEAM, ALICE, answer.message_id, data)
        retried = await telegram.wait_for(lambda: final_answer(telegram, answer.message_id))
        again = telegram.press(TEAM, ALICE, answer.message_id, data)
        [done_already] = await telegram.wait_for(lambda: telegram.answers_to(again))
    [silent] = telegram.answers_to(owner)
    assert "text" not in silent.params  # the press acted: the answer is in the chat
    assert "already pressed" in done_already.params["text"]
    ack = telegram.replies_to(answer.message_id)[0]
    assert "Cancel" in [label for label, _ in telegram.buttons(ack)]
    [block] = pre_blocks(retried.text)
    assert block.splitlines()[0] == expected_pull(
        env["MIRROR_TARGET"], lab.source, repository, "1.0"
    )
    states = [telegram.state(c) for c in telegram.replies_to(answer.message_id)]
    assert len([c for c in states if "<pre>" in c.text]) == 1
    assert ack.message_id is not None
    last = telegram.edits_of(TEAM.id, ack.message_id)[-1]  # the answer: Cancel went away
    assert "Cancel" not in [label for label, _ in telegram.buttons(last)]


async def test_cancel_button_stops_a_running_job_and_goes_away(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    repository = fresh_image(lab, tmp_path / "layers", "cancel")
    with throttled(lab.source, 300_000) as relay:  # ~20 s of copying: time to press
        env = env | {
            "MIRROR_ALLOWED_SOURCES": relay.address,
            "MIRROR_INSECURE_REGISTRIES": f"{relay.address},{lab.target}",
        }
        async with running_bot(env, tmp_path / "bot.log"):
            await polling(telegram)
            request = telegram.send(Chat(ALICE), ALICE, f"/mirror {relay.address}/{repository}:1.0")
            [(ack, label, data)] = await telegram.wait_for(lambda: buttons_of(telegram, request))
            assert label == "Cancel" and ack.message_id is not None
            pressed = telegram.press(Chat(ALICE), ALICE, ack.message_id, data)
            [told] = await telegram.wait_for(
                lambda: [c for c in telegram.replies_to(ack.message_id) if "cancelled" in c.text]
            )
            final = await telegram.wait_for(
                lambda: [
                    e for e in telegram.edits_of(ALICE, ack.message_id) if "cancelled" in e.text
                ]
            )
    assert told.text.endswith("cancelled.</b>"), told.text
    assert telegram.answers_to(pressed)
    assert telegram.buttons(final[-1]) == []
    target = env["MIRROR_TARGET"].removeprefix(f"{lab.target}/")
    flat = f"{relay.address.replace(':', '-')}.{repository.replace('/', '.')}"
    with pytest.raises(lab_module.RegistryError) as missing:  # nothing was pushed
        lab_module.pull_manifest(lab.target, f"{target}/{flat}", "1.0")
    assert missing.value.status == 404


# -- MIRROR_CONFIRM_BYTES: "Copy 1.1 MB" / Cancel before any blob moves -----------------------


def asked(telegram: FakeTelegram, chat: Chat, message_id: int) -> list[tuple[Call, str, str]]:
    """The live message's edits that ask: (edit, label, data) of its "Copy" button."""
    return [
        (edit, label, data)
        for edit in telegram.edits_of(chat.id, message_id)
        for label, data in telegram.buttons(edit)
        if label.startswith("Copy ")
    ]


def small_image(lab: lab_module.Lab, cache: Path, name: str) -> str:
    """An image of 1 MiB and a bit, over a MIRROR_CONFIRM_BYTES of 1MB."""
    repository = f"library/{name}-{uuid.uuid4().hex[:8]}"
    layers = [lab_module.LayerSpec(1 << 20, uuid.uuid4().int % 10**9)]
    lab_module.push_image(lab.source, repository, "1.0", layers, cache_dir=cache)
    return repository


async def test_a_large_image_waits_for_its_requester_to_press_copy_even_after_a_restart(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    """The live message says how large the image is and asks; nothing is pulled while it
    waits, a stranger's press is refused privately, the question survives a restart, and the
    requester's press then copies it."""
    repository = small_image(lab, tmp_path / "layers", "large")
    env = env | {"MIRROR_CONFIRM_BYTES": "1MB"}
    started = time.time_ns()
    async with running_bot(env, tmp_path / "bot1.log"):
        await polling(telegram)
        request = telegram.send(TEAM, ALICE, f"/mirror {lab.source}/{repository}:1.0")
        [ack] = await telegram.wait_for(lambda: telegram.replies_to(request))
        assert ack.message_id is not None
        [(question, label, data)] = await telegram.wait_for(
            lambda: asked(telegram, TEAM, ack.message_id)
        )
        stranger = telegram.press(TEAM, BOB, ack.message_id, data)
        [refusal] = await telegram.wait_for(lambda: telegram.answers_to(stranger))
        await asyncio.sleep(1)  # had the refused press acted, the copy would be under way
    assert re.fullmatch(r"Copy 1\.\d MB", label), label
    assert f"This image is {label.removeprefix('Copy ')}." in html.unescape(question.text)
    assert [shown for shown, _ in telegram.buttons(question)] == [label, "Cancel"]
    assert "nothing was done" in refusal.params["text"]
    assert pulls_since(lab.docker_host, started) == []  # waiting moved no blob

    async with running_bot(env, tmp_path / "bot2.log"):
        await polling(telegram)
        owner = telegram.press(TEAM, ALICE, ack.message_id, data)
        final = await telegram.wait_for(lambda: final_answer(telegram, request))
    [silent] = telegram.answers_to(owner)
    assert "text" not in silent.params  # the press acted
    [block] = pre_blocks(final.text)
    assert block.splitlines()[0] == expected_pull(
        env["MIRROR_TARGET"], lab.source, repository, "1.0"
    )
    target = env["MIRROR_TARGET"].removeprefix(f"{lab.target}/")
    flat = f"{lab.source.replace(':', '-')}.{repository.replace('/', '.')}"
    assert lab_module.pull_manifest(lab.target, f"{target}/{flat}", "1.0")
    assert telegram.buttons(telegram.edits_of(TEAM.id, ack.message_id)[-1]) == []


async def test_cancel_instead_of_copy_copies_nothing(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    repository = small_image(lab, tmp_path / "layers", "declined")
    env = env | {"MIRROR_CONFIRM_BYTES": "1MB"}
    started = time.time_ns()
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        request = telegram.send(Chat(ALICE), ALICE, f"/mirror {lab.source}/{repository}:1.0")
        [ack] = await telegram.wait_for(lambda: telegram.replies_to(request))
        assert ack.message_id is not None
        [(question, _, _)] = await telegram.wait_for(
            lambda: asked(telegram, Chat(ALICE), ack.message_id)
        )
        [cancel] = [data for label, data in telegram.buttons(question) if label == "Cancel"]
        telegram.press(Chat(ALICE), ALICE, ack.message_id, cancel)
        final = await telegram.wait_for(
            lambda: [e for e in telegram.edits_of(ALICE, ack.message_id) if "cancelled" in e.text]
        )
    assert telegram.buttons(final[-1]) == []
    assert pulls_since(lab.docker_host, started) == []
    target = env["MIRROR_TARGET"].removeprefix(f"{lab.target}/")
    flat = f"{lab.source.replace(':', '-')}.{repository.replace('/', '.')}"
    with pytest.raises(lab_module.RegistryError) as missing:
        lab_module.pull_manifest(lab.target, f"{target}/{flat}", "1.0")
    assert missing.value.status == 404


async def test_a_bulk_plan_is_shown_and_only_an_admins_press_copies_it_all(
    lab: lab_module.Lab, env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    """Over MIRROR_MAX_IMAGES a member of the group gets the plan (sizes, total) with a
    "Copy all" button; their own press is refused privately, an admin's copies the list."""
    repositories = [small_image(lab, tmp_path / "layers", f"bulk{n}") for n in range(2)]
    env = env | {"MIRROR_MAX_IMAGES": "1", "MIRROR_ADMINS": f"telegram:{ALICE}"}
    async with running_bot(env, tmp_path / "bot.log"):
        await polling(telegram)
        images = "\n".join(f"{lab.source}/{r}:1.0" for r in repositories)
        request = telegram.send(TEAM, BOB, f"/mirror\n{images}")
        [(plan, label, data)] = await telegram.wait_for(lambda: buttons_of(telegram, request))
        assert plan.message_id is not None
        by_member = telegram.press(TEAM, BOB, plan.message_id, data)
        [refusal] = await telegram.wait_for(lambda: telegram.answers_to(by_member))
        by_admin = telegram.press(TEAM, ALICE, plan.message_id, data)
        final = await telegram.wait_for(lambda: final_answer(telegram, plan.message_id))
    text = html.unescape(plan.text)
    assert "That is 2 images, more than the 1 one command may copy." in text
    assert re.search(r"In all 2\.\d MB\.", text) and "An admin may confirm it" in text
    assert re.fullmatch(r"Copy all 2 images \(2\.\d MB\)", label), label
    assert refusal.params["text"] == "Only an admin may press this button; nothing was done."
    assert "text" not in telegram.answers_to(by_admin)[0].params
    pulls = pre_blocks(final.text)[0].splitlines()
    for repository in repositories:
        assert expected_pull(env["MIRROR_TARGET"], lab.source, repository, "1.0") in pulls
