"""Webhooks (issue 26): a signed POST per finished image from a stored outbox, to a real
aiohttp receiver in this test that is down, then up (and refuses once), across a restart of
the bot; with PostgreSQL, two fronts' senders deliver each image once, under the store's lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tenacity
from aiohttp import web
from pydantic import ValidationError

import lab as lab_module
from bot.app import MirrorBot
from bot.render import RenderOptions
from bot.runtime import Role, open_runtime
from bot.serve import _chores
from bot.settings import Settings, describe
from bot.webhook_payload import webhook_payload
from mirror.audit import COLUMNS
from mirror.models import Item, ItemStatus, Job
from mirror.platform import DEFAULT_PLATFORM
from mirror.reference import parse_reference
from mirror.store import open_store
from mirror.webhooks import SIGNATURE_HEADER, WebhookSender
from tests.test_app import PLATFORM, finish, say

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """A webhook receiver: keeps what it was sent; answers 503 to the first ``refuse``."""

    port: int
    refuse: int = 0
    slow: float = 0.0
    got: list[tuple[bytes, str]] = field(default_factory=list)
    refused: int = 0
    _runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.slow:
            await asyncio.sleep(self.slow)
        if self.refused < self.refuse:
            self.refused += 1
            return web.Response(status=503)
        self.got.append((body, request.headers.get(SIGNATURE_HEADER, "")))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        """What was received, each body checked against its signature."""
        found = []
        for body, signature in self.got:
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert signature == f"sha256={expected}"
            found.append(json.loads(body))
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(60):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def settings_for(db: Path | str, lab: lab_module.Lab, url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=db,
        mirror_target=f"{lab.target}/w{uuid.uuid4().hex[:8]}",
        mirror_engine="registry",
        mirror_allowed_sources=(lab.source,),
        mirror_insecure_registries=(lab.source, lab.target),
        mirror_webhook_url=url,
        mirror_webhook_secret=SECRET,
    )


@asynccontextmanager
async def chat_bot(settings: Settings) -> AsyncIterator[MirrorBot]:
    async with (
        open_runtime(settings, role=Role.FRONT) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            runtime.lookups,
        ) as bot,
    ):
        yield bot


async def test_deliveries_wait_for_a_receiver_that_is_down_across_a_restart(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    receiver = Receiver(free_port(), refuse=1)
    settings = settings_for(tmp_path / "bot.db", lab, receiver.url)
    image = f"{lab.source}/library/hello:1.0"
    async with chat_bot(settings) as bot:
        store = bot.service.store
        sender = WebhookSender(store, receiver.url, SECRET, wait=tenacity.wait_fixed(0.05))
        sending = asyncio.create_task(sender.run())
        try:
            # Nobody listens: the chat does not wait for the receiver.
            copied = await say(bot, "alice", "room", f"/mirror {image}")
            await finish(bot)
            assert "done" in copied.messages[-1].text
            refused = await say(bot, "alice", "room", "/mirror quay.io/org/app:1")
            assert "not an allowed source registry" in refused.messages[-1].text

            async def tried() -> bool:
                pending = await store.pending_deliveries()
                return len(pending) == 2 and pending[0].attempts >= 2

            async with asyncio.timeout(60):
                while not await tried():
                    await asyncio.sleep(0.05)
            pending = await store.pending_deliveries()
            assert pending[0].last_error is not None
            assert "did not answer" in pending[0].last_error
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)

    # A restart, and the receiver is up (its first answer a 503): nothing was lost.
    await receiver.start()
    try:
        async with open_runtime(settings, role=Role.FRONT) as runtime, _chores(runtime):
            await until(lambda: len(receiver.got) == 2, "both deliveries")
            assert receiver.refused == 1
            assert await runtime.store.pending_deliveries() == []
    finally:
        await receiver.stop()

    copy, refusal = receiver.bodies()
    assert list(copy) == ["delivery_id", "timestamp", "audit", "pull"]
    assert list(copy["audit"]) == list(COLUMNS)
    assert copy["audit"]["status"] == "succeeded" and copy["audit"]["requester"] == "test:alice"
    assert copy["audit"]["source"] == str(parse_reference(image))
    target = copy["audit"]["target"]
    assert copy["pull"][0] == f"docker pull {target} && docker tag {target} {image}"
    assert copy["delivery_id"].endswith("-0") and copy["timestamp"].endswith("Z")
    assert refusal["audit"]["status"] == "refused" and refusal["pull"] == []
    assert refusal["delivery_id"] != copy["delivery_id"]


def finished_job(count: int) -> Job:
    items = [
        Item(
            "app",
            parse_reference(f"docker.io/library/app:{i}"),
            parse_reference(f"127.0.0.1:5000/m/app:{i}"),
            DEFAULT_PLATFORM,
            status=ItemStatus.SUCCEEDED,
            target_digest="sha256:" + f"{i}" * 64,
            bytes=i,
        )
        for i in range(count)
    ]
    return Job(uuid.uuid4().hex[:6], f"{PLATFORM}:alice", f"{PLATFORM}:room", items)


async def test_two_fronts_send_each_delivery_once_under_the_lock(pg_dsn: str) -> None:
    receiver = Receiver(free_port(), slow=0.05)
    await receiver.start()
    one, two = await open_store(pg_dsn), await open_store(pg_dsn)
    senders = [
        WebhookSender(store, receiver.url, SECRET, wait=tenacity.wait_fixed(0.05))
        for store in (one, two)
    ]
    try:
        one.set_outbox(webhook_payload(RenderOptions()))
        job = finished_job(6)
        await one.add_job(job)  # six finished images: six deliveries, in that transaction
        assert len(await two.pending_deliveries()) == 6
        sent = await asyncio.gather(*(sender.send_pending() for sender in senders))
        assert sorted(sent) == [0, 6]  # one took the lock; the other found it held, or done
        ids = [body["delivery_id"] for body in receiver.bodies()]
        assert ids == [f"{job.id}-{i}" for i in range(6)]
        await one.save_item(job, 0)  # written again: still one delivery for that image
        assert await two.pending_deliveries() == []
    finally:
        for sender in senders:
            await sender.aclose()
        await one.close()
        await two.close()
        await receiver.stop()


@pytest.mark.parametrize(
    ("values", "sentence"),
    [
        (
            {"mirror_webhook_url": "https://hooks.example.com/x"},
            "MIRROR_WEBHOOK_URL is set but MIRROR_WEBHOOK_SECRET is not; set the secret the "
            "receiver checks the X-Mirror-Signature header with.",
        ),
        (
            {"mirror_webhook_url": "hooks.example.com/x", "mirror_webhook_secret": "s"},
            "MIRROR_WEBHOOK_URL: `hooks.example.com/x` is not an http:// or https:// URL.",
        ),
    ],
)
def test_a_bad_webhook_setting_is_one_sentence(values: dict[str, str], sentence: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert describe(caught.value) == sentence


def test_the_secret_is_kept_out_of_logs() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_webhook_url="https://hooks.example.com/x",
        mirror_webhook_secret=SECRET,
    )
    assert SECRET in settings.secrets()
