"""A local server that speaks enough of the Slack Web API and Socket Mode for the bot.

Like slack-bolt's own ``tests/mock_web_api_server``: the real slack_sdk client talks HTTP to
it (``SLACK_API_URL``). It records every call, answers ``chat.update`` with 429 and
``Retry-After`` when asked to, and for Socket Mode hands out a ``ws://`` URL to its own
websocket endpoint, where a test pushes envelopes and reads the acknowledgements. With
``enforce=True`` it holds the bot to Slack's limit of about one message a second per channel
(``chat.postMessage`` and ``chat.update``): a call over it gets 429 and is counted in
``refused``.

It runs its own event loop in a thread, so tests stay synchronous while a bot subprocess
calls it, and waiting is done with a condition variable, not sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.support.local_http import ThreadedServer

CHANNEL_GAP = 1.0
"""Slack: about one message a second per channel."""
BOT_USER_ID = "UB0T00001"
BOT_ID = "BB0T00001"
TEAM_ID = "T0TEAM001"


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    token: str
    status: int
    result: dict[str, Any]


class FakeSlack(ThreadedServer):
    def __init__(
        self, bot_token: str, app_token: str | None = None, *, enforce: bool = False
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self.enforce = enforce
        """Hold the bot to one message a second per channel (posts and edits)."""
        self.refused = 0
        """Calls answered 429 because they went over the per-channel limit."""
        self._last_in: dict[str, float] = {}
        self.calls: list[Call] = []
        self.acks: list[dict[str, Any]] = []
        self.update_429 = 0
        """How many of the next ``chat.update`` calls get a 429."""
        self.retry_after = 1
        self.outage = 0
        """How many of the next ``chat.*`` calls get a 503 (Slack is down for a while)."""
        self.closed_channels: set[str] = set()
        """Channels the bot is not a member of: posting there fails with ``not_in_channel``."""
        self.locales: dict[str, str] = {}
        """``users.info`` locales by user id; a user not here is ``user_not_found``."""
        self._files: dict[str, bytes] = {}
        self.downloads: list[tuple[str, str]] = []
        """(file id, token) of every file download, with the token it carried."""
        self._ts = itertools.count(1)
        self._cond = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # users.info and other reads
        app.router.add_post("/hooks/{path:.*}", self._hook)
        app.router.add_get("/link", self._socket)
        app.router.add_get("/files-pri/{id}/{name}", self._file)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # -- files ---------------------------------------------------------------------------------

    def add_file(self, name: str, content: bytes, *, size: int | None = None) -> dict[str, Any]:
        """A file shared in Slack, as an event's ``files`` entry; served at ``url_private``
        to the bot token only (``size`` is what Slack announces, when it should differ)."""
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = content
        url = f"{self.url}/files-pri/T0TEST-{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "mimetype": "text/plain",
            "filetype": "text",
            "size": len(content) if size is None else size,
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"].rpartition("-")[2]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._cond:
            self.downloads.append((file_id, token))
            self._cond.notify_all()
        if token != self.bot_token:
            # What Slack does without the token: a sign-in page, not the file.
            return web.Response(status=302, headers={"Location": f"{self.url}/signin"})
        if file_id not in self._files:
            return web.Response(status=404)
        return web.Response(body=self._files[file_id])

    # -- Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        if request.content_type == "application/json":
            params: dict[str, Any] = json.loads(raw or b"{}")
        else:
            params = dict(parse_qsl(raw.decode()))
        params.update(request.query)  # some methods send their arguments in the query string
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        status, body, headers = self._answer(method, params, token)
        with self._cond:
            self.calls.append(Call(method, params, token, status, body))
            self._cond.notify_all()
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method == "apps.connections.open":
            if not self.app_token or token != self.app_token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": f"ws://{self.url.removeprefix('http://')}/link"}, {}
        if token != self.bot_token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if method == "auth.test":
            return (
                200,
                {
                    "ok": True,
                    "url": "https://example.slack.com/",
                    "team": "Example",
                    "user": "mirror",
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "bot_id": BOT_ID,
                },
                {},
            )
        if method.startswith("chat."):
            with self._cond:
                down = self.outage > 0
                self.outage -= 1 if down else 0
            if down:
                return 503, {"ok": False, "error": "service_unavailable"}, {}
        if self.enforce and method in ("chat.postMessage", "chat.update"):
            with self._cond:
                channel, now = str(params.get("channel")), time.monotonic()
                last = self._last_in.get(channel)
                if last is not None and now - last < CHANNEL_GAP:
                    self.refused += 1
                    wait = max(1, math.ceil(last + CHANNEL_GAP - now))
                    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
                self._last_in[channel] = now
        if method == "users.info":
            if not params.get("include_locale"):
                return 200, {"ok": True, "user": {"id": params.get("user")}}, {}
            locale = self.locales.get(str(params.get("user")))
            if locale is None:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            return 200, {"ok": True, "user": {"id": params["user"], "locale": locale}}, {}
        if method == "conversations.open":
            return 200, {"ok": True, "channel": {"id": "D" + params["users"][1:]}}, {}
        if method == "chat.postMessage" and params.get("channel") in self.closed_channels:
            return 200, {"ok": False, "error": "not_in_channel"}, {}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            message = {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": BOT_ID}
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            return 200, {"ok": True, "channel": params["channel"], "ts": ts, "message": message}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}, {}
        if method == "chat.update":
            with self._cond:
                limited = self.update_429 > 0
                self.update_429 -= 1 if limited else 0
            if limited:
                return (
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(self.retry_after)},
                )
            edited = {"channel": params["channel"], "ts": params["ts"], "text": params["text"]}
            return 200, {"ok": True, **edited}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    async def _hook(self, request: web.Request) -> web.Response:
        """A slash command's ``response_url``."""
        params = await request.json()
        with self._cond:
            self.calls.append(Call("response_url", params, "", 200, {}))
            self._cond.notify_all()
        return web.Response(text="ok")

    # -- Socket Mode -----------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        await ws.send_json({"type": "hello", "num_connections": 1})
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                with self._cond:
                    self.acks.append(json.loads(message.data))
                    self._cond.notify_all()
        return ws

    def send_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Push one envelope to the connected bot; returns its id (the ack carries it)."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }

        async def _send() -> None:
            await self._sockets[-1].send_json(envelope)

        asyncio.run_coroutine_threadsafe(_send(), self._loop).result(timeout=10)
        return envelope_id

    # -- what tests read -------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 120.0) -> None:
        """Block until ``predicate()`` holds (checked whenever a call arrives)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls so far: {self.summary()}")
                self._cond.wait(left)

    def connected(self) -> bool:
        return bool(self._sockets)

    def of(self, method: str, channel: str | None = None) -> list[Call]:
        with self._cond:
            return [
                c
                for c in self.calls
                if c.method == method and (channel is None or c.params.get("channel") == channel)
            ]

    def posts(self, channel: str) -> list[Call]:
        return [c for c in self.of("chat.postMessage", channel) if c.result.get("ok")]

    def updates(self, channel: str, ts: str | None = None) -> list[Call]:
        return [c for c in self.of("chat.update", channel) if ts is None or c.params["ts"] == ts]

    def buttons(self, call: Call) -> list[tuple[str, str]]:
        """``(label, value)`` of the buttons of a post or edit (an edit without: removed)."""
        return [
            (element["text"]["text"], element["value"])
            for block in call.params.get("blocks") or []
            if block["type"] == "actions"
            for element in block["elements"]
        ]

    def ephemerals(self, user: str) -> list[Call]:
        return [c for c in self.of("chat.postEphemeral") if c.params.get("user") == user]

    def summary(self) -> list[tuple[str, str, str]]:
        return [
            (c.method, str(c.params.get("channel", "")), str(c.params.get("text", ""))[:80])
            for c in self.calls
        ]


def block_actions(user: str, channel: str, message: Call, value: str) -> dict[str, Any]:
    """What Slack sends when ``user`` presses the button ``value`` under ``message``."""
    ts = str(message.result["ts"])
    shown: dict[str, Any] = {"type": "message", "ts": ts, "text": message.params.get("text")}
    if message.params.get("thread_ts"):
        shown["thread_ts"] = message.params["thread_ts"]
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "trigger_id": "1.2.3",
        "team": {"id": TEAM_ID, "domain": "example"},
        "channel": {"id": channel, "name": "ops"},
        "message": shown,
        "response_url": "https://hooks.slack.com/actions/T0TEAM001/1/x",
        "actions": [
            {
                "action_id": f"mirror:{value}",
                "block_id": "b1",
                "value": value,
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }
