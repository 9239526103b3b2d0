"""A local server that speaks enough of Feishu's Open API and long connection for the bot.

The real lark-oapi client talks HTTP to it (``FEISHU_DOMAIN``): the tenant token, the bot's
info, messages created, replied and patched, ephemeral cards, each checked as Feishu checks
them (a token it issued, a card of at most 30 KB, a patched card that is shared). With
``enforce=True`` it holds the bot to Feishu's limits, 5 messages a second per chat and 5
patches a second per message: a call over them gets Feishu's 429 (``99991400``, with
``x-ogw-ratelimit-reset``) and is counted in ``refused``.

The long connection is Feishu's too: ``/callback/ws/endpoint`` hands out a ``ws://`` URL to a
websocket speaking lark's protobuf frames (the ``Frame`` class the SDK ships), where a test
pushes events and card callbacks and reads the client's answers. For ``http`` mode,
:func:`post_event` delivers an event as Feishu does: with the verification token, encrypted and
signed with the encrypt key when there is one.

It runs its own event loop in a thread, so tests stay synchronous while a bot subprocess calls
it, and waiting is done with a condition variable, not sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from tests.support.local_http import ThreadedServer

APP_ID = "cli_a0test0000000001"
APP_SECRET = "test-app-secret-0123456789abcdef"
BOT_OPEN_ID = "ou_b0t000000000000000000000000001"
TENANT = "tenant-own-0001"
OTHER_TENANT = "tenant-other-0002"
CARD_LIMIT = 30 * 1024
CHAT_BUDGET = (5, 1.0)
"""Feishu: about 5 messages a second per chat."""
PATCH_BUDGET = (5, 1.0)
"""Feishu: a message is patched at most 5 times a second."""
_counter = itertools.count(1)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    token: str
    status: int
    result: dict[str, Any]
    at: float


@dataclass
class Message:
    """A card the bot posted: where, in answer to what, and every version of it."""

    message_id: str
    chat_id: str
    parent_id: str | None
    in_thread: bool
    cards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def card(self) -> dict[str, Any]:
        return self.cards[-1]


def card_text(card: dict[str, Any], locale: str | None = None) -> str:
    """Everything a reader sees in a card (header and elements), in ``locale`` when the card
    carries several; buttons as ``[label]``."""
    if "i18n_elements" in card:
        locale = locale or "en_us"
        header = card["i18n_header"][locale]
        elements = card["i18n_elements"][locale]
    else:
        header, elements = card.get("header") or {}, card.get("elements") or []
    out = [str((header.get("title") or {}).get("content", ""))]
    for element in elements:
        if element["tag"] == "markdown":
            out.append(element["content"])
        elif element["tag"] == "note":
            out.extend(e.get("content", "") for e in element["elements"])
        elif element["tag"] == "action":
            out.extend(f"[{b['text']['content']}]" for b in element["actions"])
    return "\n".join(out)


def card_buttons(card: dict[str, Any], locale: str = "en_us") -> list[tuple[str, dict[str, Any]]]:
    """``(label, value)`` of a card's buttons."""
    elements = card["i18n_elements"][locale] if "i18n_elements" in card else card["elements"]
    return [
        (button["text"]["content"], button["value"])
        for element in elements
        if element["tag"] == "action"
        for button in element["actions"]
    ]


class FakeFeishu(ThreadedServer):
    def __init__(self, *, enforce: bool = False) -> None:
        super().__init__()
        self.enforce = enforce
        self.refused = 0
        """Calls answered 429 because they went over a chat's or a message's limit."""
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        """The client's answer to each frame pushed, by the frame's message_id header."""
        self.patch_429 = 0
        """How many of the next patches get a 429 whatever the pace."""
        self.endpoint_asks = 0
        self.requests: dict[str, str] = {}
        """The chat of every message people sent (what the bot replies to)."""
        self._tokens: set[str] = set()
        self._sent: dict[str, deque[float]] = {}
        self._patched: dict[str, deque[float]] = {}
        self._cond = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._bot_info)
        app.router.add_post("/open-apis/im/v1/messages", self._create)
        app.router.add_post("/open-apis/im/v1/messages/{id}/reply", self._reply)
        app.router.add_patch("/open-apis/im/v1/messages/{id}", self._patch)
        app.router.add_post("/open-apis/ephemeral/v1/send", self._ephemeral)
        app.router.add_post("/callback/ws/endpoint", self._endpoint)
        app.router.add_get("/ws", self._socket)

    def reset(self) -> None:
        """Forget the calls and answers so far; the messages stay (a restarted bot edits them)."""
        with self._cond:
            self.calls.clear()
            self.ephemerals.clear()
            self.answers.clear()
            self.refused = 0

    # -- the Open API ----------------------------------------------------------------------

    def _record(
        self, request: web.Request, body: dict[str, Any], status: int, result: dict[str, Any]
    ) -> None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        call = Call(
            request.method, request.path, dict(request.query), body, token, status, result,
            time.monotonic(),
        )  # fmt: skip
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    async def _answer(
        self,
        request: web.Request,
        work: Callable[[dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]],
        *,
        authorized: bool = True,
    ) -> web.Response:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if authorized and token not in self._tokens:
            status, result, headers = 400, {"code": 99991663, "msg": "Invalid access token"}, {}
        else:
            status, result, headers = work(body)
        self._record(request, body, status, result)
        return web.json_response(result, status=status, headers=headers)

    async def _token(self, request: web.Request) -> web.Response:
        def work(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
                return 200, {"code": 10014, "msg": "app secret invalid"}, {}
            token = f"t-{uuid.uuid4().hex}"
            self._tokens.add(token)
            return 200, {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}, {}

        return await self._answer(request, work, authorized=False)

    async def _bot_info(self, request: web.Request) -> web.Response:
        def work(_body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            bot = {"activate_status": 2, "app_name": "hub-mirror", "open_id": BOT_OPEN_ID}
            return 200, {"code": 0, "msg": "ok", "bot": bot}, {}

        return await self._answer(request, work)

    def _over(self, window: dict[str, deque[float]], key: str, budget: tuple[int, float]) -> bool:
        """Whether one more call for ``key`` goes over ``budget`` (counted if it does not)."""
        calls, seconds = budget
        now = time.monotonic()
        with self._cond:
            seen = window.setdefault(key, deque())
            while seen and seen[0] <= now - seconds:
                seen.popleft()
            if len(seen) >= calls:
                self.refused += 1
                return True
            seen.append(now)
            return False

    @staticmethod
    def _limited() -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"x-ogw-ratelimit-limit": "5", "x-ogw-ratelimit-reset": "1"}
        return 429, {"code": 99991400, "msg": "request trigger frequency limit"}, headers

    @staticmethod
    def _card(content: Any) -> dict[str, Any] | tuple[int, dict[str, Any], dict[str, str]]:
        if not isinstance(content, str) or len(content.encode()) > CARD_LIMIT:
            return 200, {"code": 230025, "msg": "message content is too long"}, {}
        card = json.loads(content)
        if not (card.get("config") or {}).get("update_multi"):
            return 200, {"code": 230099, "msg": "card is not shared: set update_multi"}, {}
        return dict(card)

    def _post(
        self, chat_id: str, body: dict[str, Any], parent: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if body.get("msg_type") != "interactive":
            return 200, {"code": 230001, "msg": "only cards here"}, {}
        card = self._card(body.get("content"))
        if isinstance(card, tuple):
            return card
        if self.enforce and self._over(self._sent, chat_id, CHAT_BUDGET):
            return self._limited()
        message_id = f"om_{next(_counter):08d}"
        message = Message(message_id, chat_id, parent, bool(body.get("reply_in_thread")), [card])
        with self._cond:
            self.messages[message_id] = message
        return 200, {"code": 0, "msg": "success", "data": _posted(message)}, {}

    async def _create(self, request: web.Request) -> web.Response:
        def work(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            kind, receive_id = request.query.get("receive_id_type"), str(body.get("receive_id"))
            chat_id = receive_id if kind == "chat_id" else f"oc_p2p_{receive_id}"
            return self._post(chat_id, body, None)

        return await self._answer(request, work)

    async def _reply(self, request: web.Request) -> web.Response:
        parent = request.match_info["id"]

        def work(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            with self._cond:
                chat_id = self.requests.get(parent) or getattr(
                    self.messages.get(parent), "chat_id", ""
                )
            if not chat_id:
                return 400, {"code": 230011, "msg": "the message was recalled"}, {}
            return self._post(chat_id, body, parent)

        return await self._answer(request, work)

    async def _patch(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]

        def work(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            message = self.messages.get(message_id)
            if message is None:
                return 400, {"code": 230011, "msg": "the message was recalled"}, {}
            card = self._card(body.get("content"))
            if isinstance(card, tuple):
                return card
            with self._cond:
                forced = self.patch_429 > 0
                self.patch_429 -= 1 if forced else 0
            if forced or (self.enforce and self._over(self._patched, message_id, PATCH_BUDGET)):
                return self._limited()
            with self._cond:
                message.cards.append(card)
            return 200, {"code": 0, "msg": "success", "data": {}}, {}

        return await self._answer(request, work)

    async def _ephemeral(self, request: web.Request) -> web.Response:
        def work(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
            with self._cond:
                self.ephemerals.append(body)
            return (
                200,
                {"code": 0, "msg": "ok", "data": {"message_id": f"om_e{next(_counter)}"}},
                {},
            )

        return await self._answer(request, work)

    # -- the long connection ---------------------------------------------------------------

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._cond:
            self.endpoint_asks += 1
        if body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": 1000040345, "msg": "app not found or secret wrong"})
        host = self.url.removeprefix("http://")
        config = {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                  "PingInterval": 120}  # fmt: skip
        url = f"ws://{host}/ws?device_id=dev-{next(_counter)}&service_id=7"
        return web.json_response(
            {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}}
        )

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            frame = Frame()
            frame.ParseFromString(message.data)
            headers = {h.key: h.value for h in frame.headers}
            if frame.method == 0 and headers.get("type") == "ping":
                pong = _frame(0, {"type": "pong"}, b"")
                pong.service = frame.service
                await ws.send_bytes(pong.SerializeToString())
            elif frame.method == 1:
                with self._cond:
                    self.answers[headers.get("message_id", "")] = json.loads(frame.payload)
                    self._cond.notify_all()
        with self._cond:
            self._sockets.remove(ws)
            self._cond.notify_all()
        return ws

    def message(self, text: str, **details: Any) -> tuple[dict[str, Any], str]:
        """:func:`message_event`, its message known here as one the bot may reply to."""
        event, message_id = message_event(text, **details)
        with self._cond:
            self.requests[message_id] = details["chat_id"]
        return event, message_id

    def connected(self) -> bool:
        with self._cond:
            return bool(self._sockets)

    def push(self, event: dict[str, Any]) -> str:
        """Send one event (or card callback) over the long connection; returns the frame's
        message id, under which the client's answer is kept in ``answers``."""
        frame_id = f"frame-{next(_counter)}"
        frame = _frame(1, {"type": "event", "message_id": frame_id, "trace_id": "tr",
                           "sum": "1", "seq": "0"}, json.dumps(event).encode())  # fmt: skip

        async def _send() -> None:
            await self._sockets[-1].send_bytes(frame.SerializeToString())

        asyncio.run_coroutine_threadsafe(_send(), self._loop).result(timeout=10)
        return frame_id

    # -- what tests read -------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Block until ``predicate()`` is truthy (checked whenever a call arrives); its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (found := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls so far: {self.summary()}")
                self._cond.wait(left)
            return found

    async def until(self, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
        """:meth:`wait_for` from a test's event loop, which keeps running meanwhile."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def of(self, path_end: str, method: str = "POST") -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.path.endswith(path_end) and c.method == method]

    def replies_to(self, message_id: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages.values() if m.parent_id == message_id]

    def in_chat(self, chat_id: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages.values() if m.chat_id == chat_id]

    def patches(self) -> list[Call]:
        return self.of("", "PATCH")

    def summary(self) -> list[tuple[str, str, int, int]]:
        with self._cond:
            return [(c.method, c.path, c.status, c.result.get("code", -1)) for c in self.calls]


def _posted(message: Message) -> dict[str, Any]:
    return {"message_id": message.message_id, "chat_id": message.chat_id, "msg_type": "interactive"}


def _frame(method: int, headers: dict[str, str], payload: bytes) -> Frame:
    frame = Frame()
    frame.SeqID = 0
    frame.LogID = 0
    frame.service = 7
    frame.method = method
    for key, value in headers.items():
        header = frame.headers.add()
        header.key, header.value = key, value
    frame.payload = payload
    return frame


# -- events as Feishu sends them ----------------------------------------------------------------


def _header(event_type: str, token: str, event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "event_type": event_type,
        "create_time": str(int(time.time() * 1000)),
        "token": token,
        "app_id": APP_ID,
        "tenant_key": TENANT,
    }


def message_event(
    text: str,
    *,
    sender: str,
    chat_id: str,
    group: bool = False,
    mention_bot: bool | None = None,
    tenant: str = TENANT,
    thread_id: str | None = None,
    token: str = "",
    event_id: str | None = None,
) -> tuple[dict[str, Any], str]:
    """``im.message.receive_v1`` for ``text`` (``@bot`` in it stands for the bot's mention,
    which a group message gets by default); the event and the message's id."""
    message_id = f"om_req{next(_counter):08d}"
    mentions = []
    if mention_bot if mention_bot is not None else group:
        mentions.append({"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID, "union_id": "on_b",
                         "user_id": ""}, "name": "hub-mirror", "tenant_key": TENANT})  # fmt: skip
        text = text if "@bot" in text else f"@bot {text}"
    message: dict[str, Any] = {
        "message_id": message_id,
        "root_id": "",
        "parent_id": "",
        "create_time": str(int(time.time() * 1000)),
        "chat_id": chat_id,
        "chat_type": "group" if group else "p2p",
        "message_type": "text",
        "content": json.dumps({"text": text.replace("@bot", "@_user_1")}),
        "mentions": mentions,
    }
    if thread_id:
        message["thread_id"] = thread_id
    sender_block = {"sender_id": {"open_id": sender, "union_id": f"on_{sender}", "user_id": ""},
                    "sender_type": "user", "tenant_key": tenant}  # fmt: skip
    event = {
        "schema": "2.0",
        "header": _header("im.message.receive_v1", token, event_id),
        "event": {"sender": sender_block, "message": message},
    }
    return event, message_id


def card_action_event(
    *,
    presser: str,
    chat_id: str,
    message_id: str,
    value: dict[str, Any],
    tenant: str = TENANT,
    token: str = "",
    event_id: str | None = None,
) -> dict[str, Any]:
    """``card.action.trigger``: ``presser`` pressed the button whose value is ``value``."""
    return {
        "schema": "2.0",
        "header": _header("card.action.trigger", token, event_id),
        "event": {
            "operator": {"tenant_key": tenant, "open_id": presser, "union_id": f"on_{presser}"},
            "token": "c-update-token",
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


def encrypt(payload: dict[str, Any], encrypt_key: str) -> bytes:
    """The body Feishu posts when the app has an encrypt key: AES-256-CBC under the key's
    sha256, the IV first, in base64."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(payload).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    secret = base64.b64encode(iv + encryptor.update(plain) + encryptor.finalize()).decode()
    return json.dumps({"encrypt": secret}).encode()


def post_event(
    url: str,
    payload: dict[str, Any],
    *,
    encrypt_key: str | None = None,
    sign_key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST an event to the bot as Feishu does: encrypted and signed with ``encrypt_key`` when
    given (``sign_key`` signs with another key: a forgery); the answer's status and body."""
    body = encrypt(payload, encrypt_key) if encrypt_key else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    key = sign_key if sign_key is not None else encrypt_key
    if key:
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        signature = hashlib.sha256((timestamp + nonce + key).encode() + body).hexdigest()
        headers |= {"X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce,
                    "X-Lark-Signature": signature}  # fmt: skip
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
