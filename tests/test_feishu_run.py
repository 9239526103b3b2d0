"""``mirror-bot run`` with Feishu, end to end: the real program against the local Feishu and lab.

The few subprocess tests of the adapter (its rules run in process, ``tests/test_feishu.py``):
the long connection and ``mirror-bot check``; ``http`` mode behind the SDK's checks; and thirty
people asking at once, twenty of them in two groups, against a Feishu that enforces its limits.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import lab as lab_module
from tests.support.cli import MIRROR_BOT, bot_env
from tests.support.fake_feishu import (
    APP_ID,
    APP_SECRET,
    FakeFeishu,
    Message,
    card_text,
    post_event,
)

ALICE = "ou_a11ce000000000000000000000000001"
TOKEN = "verification-token-run-0123456789"
ENCRYPT_KEY = "encrypt-key-run-0123456789abcdef"
GROUPS = ("oc_team0000000000000000000000000001", "oc_team0000000000000000000000000002")
GROUP_MEMBERS = tuple(f"ou_member{n:023d}" for n in range(20))
LONERS = tuple(f"ou_loner{n:024d}" for n in range(10))


def env_for(lab: lab_module.Lab, tmp_path: Path, feishu: FakeFeishu, **more: str) -> dict[str, str]:
    return bot_env(
        lab,
        tmp_path / "mirror.db",
        MIRROR_ENGINE="registry",
        MIRROR_TARGET=f"{lab.target}/fsrun{uuid.uuid4().hex[:8]}",
        FEISHU_APP_ID=APP_ID,
        FEISHU_APP_SECRET=APP_SECRET,
        FEISHU_DOMAIN=feishu.url,
        NO_PROXY="127.0.0.1,localhost",
        **more,
    )


@asynccontextmanager
async def running_bot(env: dict[str, str], log: Path) -> AsyncIterator[None]:
    """``mirror-bot run`` until the block ends, then SIGTERM; it must stop cleanly and quietly,
    without a secret in its log."""
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
    for secret in (APP_SECRET, TOKEN, ENCRYPT_KEY):
        assert secret not in output


def final_answer(feishu: FakeFeishu, request: str) -> Message | None:
    """The reply to ``request`` that is not its acknowledgement."""
    replies = feishu.replies_to(request)
    return replies[1] if len(replies) > 1 else None


async def test_the_long_connection_and_check(lab: lab_module.Lab, tmp_path: Path) -> None:
    feishu = FakeFeishu().start()
    try:
        env = env_for(lab, tmp_path, feishu)
        check = subprocess.run(
            [MIRROR_BOT, "check"], env=env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert f"feishu: ok (app {APP_ID} at {feishu.url} (ws mode))" in check.stdout, check
        image = f"{lab.source}/library/hello:1.0"
        async with running_bot(env, tmp_path / "bot.log"):
            await feishu.until(feishu.connected)
            event, request = feishu.message(f"/mirror {image}", sender=ALICE, chat_id="oc_dm1")
            feishu.push(event)
            final = await feishu.until(lambda: final_answer(feishu, request))
    finally:
        feishu.stop()
    assert "docker pull" in card_text(final.card)
    assert "done" in card_text(feishu.replies_to(request)[0].card)


async def test_http_mode_behind_the_token_and_the_signature(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    feishu = FakeFeishu().start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feishu/events"
    env = env_for(
        lab,
        tmp_path,
        feishu,
        FEISHU_MODE="http",
        FEISHU_PORT=str(port),
        FEISHU_VERIFICATION_TOKEN=TOKEN,
        FEISHU_ENCRYPT_KEY=ENCRYPT_KEY,
    )

    async def post(payload: dict[str, object], **how: str) -> tuple[int, dict[str, object]]:
        return await asyncio.to_thread(post_event, url, payload, **how)

    image = f"{lab.source}/library/hello:1.0"
    try:
        async with running_bot(env, tmp_path / "bot.log"):
            challenge = {"challenge": "c-1", "token": TOKEN, "type": "url_verification"}
            async with asyncio.timeout(60):
                while True:
                    try:
                        answer = await post(challenge, encrypt_key=ENCRYPT_KEY)
                        break
                    except OSError:  # not listening yet
                        await asyncio.sleep(0.2)
            assert answer == (200, {"challenge": "c-1"})
            forged, forged_request = feishu.message(
                f"/mirror {image}", sender=ALICE, chat_id="oc_dm2", token=TOKEN
            )
            status, _ = await post(forged, encrypt_key=ENCRYPT_KEY, sign_key="not-the-key")
            assert status == 500
            event, request = feishu.message(
                f"/mirror {image}", sender=ALICE, chat_id="oc_dm2", token=TOKEN
            )
            assert (await post(event, encrypt_key=ENCRYPT_KEY))[0] == 200
            final = await feishu.until(lambda: final_answer(feishu, request))
    finally:
        feishu.stop()
    assert "docker pull" in card_text(final.card)
    assert feishu.replies_to(forged_request) == []


@pytest.mark.timeout(400)
async def test_thirty_requests_at_once_are_all_answered_and_nothing_is_refused(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    feishu = FakeFeishu(enforce=True).start()
    image = f"{lab.source}/library/hello:1.0"
    env = env_for(lab, tmp_path, feishu)
    requests: dict[str, str] = {}
    try:
        async with running_bot(env, tmp_path / "bot.log"):
            await feishu.until(feishu.connected)
            for n, member in enumerate(GROUP_MEMBERS):
                chat = GROUPS[n % 2]
                event, request = feishu.message(
                    f"@bot /mirror {image}", sender=member, chat_id=chat, group=True
                )
                feishu.push(event)
                requests[request] = chat
            for loner in LONERS:
                chat = f"oc_p2p_{loner}"
                event, request = feishu.message(f"/mirror {image}", sender=loner, chat_id=chat)
                feishu.push(event)
                requests[request] = chat

            def unanswered() -> list[str]:
                return [r for r in requests if final_answer(feishu, r) is None]

            await feishu.until(lambda: not unanswered(), 300)
    finally:
        feishu.stop()
    for request, chat in requests.items():
        answer = final_answer(feishu, request)
        assert answer is not None and answer.chat_id == chat
        assert "docker pull" in card_text(answer.card)
    assert feishu.refused == 0
    assert [c for c in feishu.calls if c.status == 429] == []
