"""A local DingTalk: the Open API over HTTP and the stream gateway, enough for the bot.

Like ``fake_slack.py``: the real dingtalk-stream client and our aiohttp calls talk to it
(``DINGTALK_API_URL``). It hands out access tokens (``/v1.0/oauth2/accessToken``), opens
stream connections (``/v1.0/gateway/connections/open``, then a WebSocket that speaks the
SDK's JSON frames: a test pushes messages and card presses as ``CALLBACK`` frames and reads the
acknowledgements), takes robot messages (a message's ``sessionWebhook``, ``groupMessages/send``,
``oToMessages/batchSend``) and cards (``createAndDeliver``, updates), and records all of it as
the conversations would show it. It answers 429 when asked to, and with ``enforce=True`` holds
the bot to 20 messages a minute per conversation (card updates count): a call over it is
refused and counted in ``refused``.

It runs its own event loop in a thread, so a bot subprocess or the test's own loop can call it
while the test waits on a condition variable, not on sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from tests.support.local_http import ThreadedServer

CLIENT_ID = "dingtestclientid4711"
CLIENT_SECRET = "test-client-secret-must-never-be-logged-4711"
CORP = "dingcorp0000000001"
OTHER_CORP = "dingcorp0000000999"
TEMPLATE = "hmb-progress-template.schema"
MESSAGES_TOPIC = "/v1.0/im/bot/messages/get"
CARDS_TOPIC = "/v1.0/card/instances/callback"
CHAT_LIMIT = 20
"""Messages a minute per conversation (DingTalk's published figure for custom robots)."""
CHAT_WINDOW = 60.0


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any]
    status: int
    at: float


@dataclass(frozen=True)
class Sent:
    """A message or a new card, as its conversation shows it."""

    conversation: str
    kind: Literal["message", "card"]
    via: Literal["webhook", "api"]
    title: str
    text: str
    """A message's markdown; a card's ``content``."""
    card: str | None = None
    at: tuple[str, ...] = ()
    """Whom it ``@``-ed."""


@dataclass
class Card:
    conversation: str
    template: str
    callback: str
    params: list[dict[str, str]] = field(default_factory=list)
    """Its data: as created, then after each update (keys not sent are kept)."""

    @property
    def now(self) -> dict[str, str]:
        return self.params[-1]

    def buttons(self) -> list[tuple[str, str]]:
        """``(label, id)`` of the buttons it shows now."""
        return [(b["label"], b["id"]) for b in json.loads(self.now.get("buttons") or "[]")]


def sign(secret: str, timestamp: str) -> str:
    """How DingTalk signs its HTTP callbacks (computed here from the documentation)."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def signed_headers(secret: str = CLIENT_SECRET, *, age: float = 0.0) -> dict[str, str]:
    timestamp = str(int((time.time() - age) * 1000))
    return {"timestamp": timestamp, "sign": sign(secret, timestamp)}


class FakeDingTalk(ThreadedServer):
    def __init__(self, *, enforce: bool = False) -> None:
        super().__init__()
        self.enforce = enforce
        self.refused = 0
        """Sends refused for going over a conversation's 20 a minute."""
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.cards: dict[str, Card] = {}
        self.acks: list[dict[str, Any]] = []
        self.opened: list[dict[str, Any]] = []
        """Bodies of ``connections/open``: credentials and subscriptions."""
        self.limit_next = 0
        """How many of the next sends (messages, cards, updates) get a 429."""
        self.flow_control_next = 0
        """How many of the next ``batchSend`` calls report the recipient flow-controlled."""
        self.webhooks_gone = False
        """Every session webhook answers that it expired, whatever its time says."""
        self._private: dict[str, str] = {}
        """staffId -> the conversation id of their one-to-one chat with the robot."""
        self._sessions: dict[str, str] = {}
        """session webhook token -> conversation id."""
        self._tokens: set[str] = set()
        self._arrivals: dict[str, deque[float]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_post("/robot/sendBySession", self._webhook)
        app.router.add_post("/v1.0/robot/groupMessages/send", self._group_send)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._batch_send)
        app.router.add_post("/v1.0/card/instances/createAndDeliver", self._card_create)
        app.router.add_put("/v1.0/card/instances", self._card_update)

    def _record(self, request: web.Request, body: dict[str, Any], status: int) -> None:
        with self._cond:
            self.calls.append(Call(request.method, request.path, body, status, time.monotonic()))
            self._cond.notify_all()

    # -- tokens and the gateway --------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("appKey") != CLIENT_ID or body.get("appSecret") != CLIENT_SECRET:
            self._record(request, body, 400)
            return web.json_response(
                {"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"},
                status=400,
            )
        token = f"token-{next(self._ids)}"
        with self._cond:
            self._tokens.add(token)
        self._record(request, body, 200)
        return web.json_response({"accessToken": token, "expireIn": 7200})

    def expire_tokens(self) -> None:
        """Every access token handed out so far stops working (a 401 from then on)."""
        with self._cond:
            self._tokens.clear()

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            self._record(request, {"clientId": body.get("clientId")}, 401)
            return web.json_response({"code": "unauthorized"}, status=401)
        with self._cond:
            self.opened.append(body)
        self._record(request, {"clientId": body.get("clientId")}, 200)
        endpoint = f"ws://{self.url.removeprefix('http://')}/gateway"
        return web.json_response({"endpoint": endpoint, "ticket": f"ticket+{uuid.uuid4()}"})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                with self._cond:
                    self.acks.append(json.loads(message.data))
                    self._cond.notify_all()
        with self._cond:
            self._sockets.remove(ws)
            self._cond.notify_all()
        return ws

    def connections(self) -> int:
        with self._cond:
            return len(self._sockets)

    def _push(self, frame: dict[str, Any]) -> str:
        async def _send() -> None:
            await self._sockets[-1].send_json(frame)

        asyncio.run_coroutine_threadsafe(_send(), self._loop).result(timeout=10)
        return str(frame["headers"]["messageId"])

    def push(self, topic: str, data: dict[str, Any], *, age: float = 0.0) -> str:
        """A ``CALLBACK`` frame to the connected bot; returns its id (the ack carries it)."""
        sent = str(int((time.time() - age) * 1000))
        headers = {
            "appId": CLIENT_ID,
            "connectionId": "conn-1",
            "contentType": "application/json",
            "messageId": f"frame-{uuid.uuid4()}",
            "time": sent,
            "topic": topic,
        }
        frame = {"specVersion": "1.0", "type": "CALLBACK", "headers": headers}
        return self._push(frame | {"data": json.dumps(data, ensure_ascii=False)})

    def system(self, topic: str, data: dict[str, Any] | None = None) -> str:
        """A ``SYSTEM`` frame: ``ping`` (answered with its data) or ``disconnect``."""
        headers = {"messageId": f"sys-{uuid.uuid4()}", "topic": topic, "contentType": "json"}
        frame = {"specVersion": "1.0", "type": "SYSTEM", "headers": headers}
        return self._push(frame | {"data": json.dumps(data or {})})

    def acked(self, frame_id: str) -> dict[str, Any] | None:
        with self._cond:
            return next(
                (a for a in self.acks if a.get("headers", {}).get("messageId") == frame_id), None
            )

    # -- what people send ----------------------------------------------------------------------

    def private_chat(self, staff: str) -> str:
        """The conversation id of ``staff``'s one-to-one chat with the robot."""
        with self._cond:
            return self._private.setdefault(staff, f"cidP{staff}{'x' * 4}==")

    def message(
        self,
        conversation: str,
        staff: str | None,
        text: str,
        *,
        group: bool = True,
        corp: str = CORP,
        age: float = 0.0,
        webhook_left: float = 5400.0,
        sender_id: str | None = None,
    ) -> dict[str, Any]:
        """What the robot receives when ``staff`` (None: an external contact, who has no
        staffId) writes ``text`` in ``conversation`` (a group, where they ``@``-ed it)."""
        now = time.time() - age
        session = f"session-{uuid.uuid4().hex}"
        with self._cond:
            self._sessions[session] = conversation
        data: dict[str, Any] = {
            "conversationId": conversation,
            "conversationType": "2" if group else "1",
            "chatbotCorpId": CORP,
            "chatbotUserId": "$:LWCP_v1:$robot",
            "msgId": f"msg{uuid.uuid4().hex}",
            "senderNick": staff or "guest",
            "isAdmin": False,
            "sessionWebhookExpiredTime": int((now + webhook_left) * 1000),
            "createAt": int(now * 1000),
            "senderCorpId": corp,
            "senderId": sender_id or f"$:LWCP_v1:${staff or uuid.uuid4().hex}",
            "sessionWebhook": f"{self.url}/robot/sendBySession?session={session}",
            "text": {"content": f" {text}"},
            "msgtype": "text",
            "robotCode": CLIENT_ID,
        }
        if group:
            data |= {"isInAtList": True, "conversationTitle": "team", "atUsers": []}
        if staff is not None:
            data["senderStaffId"] = staff
        return data

    def press(self, card: str, user: str, action: str) -> dict[str, Any]:
        """What a card callback carries when ``user`` presses the button ``action``."""
        conversation = self.cards[card].conversation
        private = conversation in self._private.values()
        return {
            "type": "actionCallback",
            "outTrackId": card,
            "corpId": CORP,
            "userId": user,
            "userIdType": 1,
            "spaceType": "IM_ROBOT" if private else "IM_GROUP",
            "spaceId": conversation,
            "extension": "{}",
            "content": json.dumps({"cardPrivateData": {"actionIds": [action], "params": {}}}),
        }

    # -- what the bot sends ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        with self._cond:
            return request.headers.get("x-acs-dingtalk-access-token") in self._tokens

    def _over_limit(self, conversation: str) -> bool:
        """Counts an arrival; True (and counted as refused) when it is one too many."""
        with self._cond:
            if self.limit_next > 0:
                self.limit_next -= 1
                return True
            if not self.enforce:
                return False
            now = time.monotonic()
            arrivals = self._arrivals.setdefault(conversation, deque())
            while arrivals and arrivals[0] + CHAT_WINDOW <= now:
                arrivals.popleft()
            if len(arrivals) >= CHAT_LIMIT:
                self.refused += 1
                return True
            arrivals.append(now)
            return False

    def _keep(self, sent: Sent) -> None:
        with self._cond:
            self.sent.append(sent)
            self._cond.notify_all()

    async def _api_call(
        self, request: web.Request, conversation: Callable[[dict[str, Any]], str | None]
    ) -> tuple[dict[str, Any], str | None, web.Response | None]:
        """The body, its conversation, and an error answer when there is one."""
        body = await request.json()
        if not self._authorized(request):
            self._record(request, body, 401)
            return body, None, web.json_response({"code": "InvalidAuthentication"}, status=401)
        where = conversation(body)
        if where is None:
            self._record(request, body, 400)
            return body, None, web.json_response({"code": "param.invalid"}, status=400)
        if self._over_limit(where):
            self._record(request, body, 429)
            error = {"code": "Throttling.Api", "message": "too many requests"}
            return body, where, web.json_response(error, status=429)
        return body, where, None

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        conversation = self._sessions.get(request.query.get("session", ""))
        if conversation is None or self.webhooks_gone:
            self._record(request, body, 200)
            return web.json_response({"errcode": 300001, "errmsg": "session expired"})
        if self._over_limit(conversation):
            self._record(request, body, 200)
            return web.json_response({"errcode": 130101, "errmsg": "send too fast"})
        self._record(request, body, 200)
        markdown = body.get("markdown") or {}
        at = tuple((body.get("at") or {}).get("atUserIds") or ())
        sent = Sent(conversation, "message", "webhook", markdown["title"], markdown["text"], at=at)
        self._keep(sent)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _group_send(self, request: web.Request) -> web.Response:
        body, where, error = await self._api_call(request, lambda b: b.get("openConversationId"))
        if error is not None:
            return error
        assert where is not None
        self._record(request, body, 200)
        self._keep_api_message(where, body)
        return web.json_response({"processQueryKey": f"q{next(self._ids)}"})

    async def _batch_send(self, request: web.Request) -> web.Response:
        def recipient(body: dict[str, Any]) -> str | None:
            [staff] = body.get("userIds") or [None]
            return self.private_chat(staff) if staff else None

        body, where, error = await self._api_call(request, recipient)
        if error is not None:
            return error
        assert where is not None
        self._record(request, body, 200)
        with self._cond:
            flow_controlled = self.flow_control_next > 0
            self.flow_control_next -= 1 if flow_controlled else 0
        if flow_controlled:
            answer = {"processQueryKey": "", "flowControlledStaffIdList": body["userIds"]}
            return web.json_response(answer)
        self._keep_api_message(where, body)
        return web.json_response({"processQueryKey": f"q{next(self._ids)}"})

    def _keep_api_message(self, conversation: str, body: dict[str, Any]) -> None:
        assert body["msgKey"] == "sampleMarkdown" and body["robotCode"] == CLIENT_ID
        param = json.loads(body["msgParam"])
        self._keep(Sent(conversation, "message", "api", param["title"], param["text"]))

    async def _card_create(self, request: web.Request) -> web.Response:
        def space(body: dict[str, Any]) -> str | None:
            kind, _, space_id = str(body.get("openSpaceId", "")).partition("//")[2].partition(".")
            if kind == "IM_GROUP":
                return space_id
            return self.private_chat(space_id) if kind == "IM_ROBOT" else None

        body, where, error = await self._api_call(request, space)
        if error is not None:
            return error
        assert where is not None
        self._record(request, body, 200)
        params = body["cardData"]["cardParamMap"]
        card = Card(where, body["cardTemplateId"], body["callbackType"], [dict(params)])
        deliver = body.get("imGroupOpenDeliverModel") or {}
        at = tuple(deliver.get("atUserIds") or ())
        with self._cond:
            self.cards[body["outTrackId"]] = card
        self._keep(
            Sent(where, "card", "api", params["title"], params["content"], body["outTrackId"], at)
        )
        return web.json_response({"success": True, "result": {"outTrackId": body["outTrackId"]}})

    async def _card_update(self, request: web.Request) -> web.Response:
        def conversation(body: dict[str, Any]) -> str | None:
            card = self.cards.get(str(body.get("outTrackId")))
            return card.conversation if card is not None else None

        body, _, error = await self._api_call(request, conversation)
        if error is not None:
            return error
        self._record(request, body, 200)
        card = self.cards[body["outTrackId"]]
        with self._cond:
            card.params.append(card.now | body["cardData"]["cardParamMap"])
            self._cond.notify_all()
        return web.json_response({"success": True, "result": True})

    # -- what tests read ---------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Block until ``predicate()`` is truthy (checked whenever something arrives)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (found := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; sent so far: {self.summary()}")
                self._cond.wait(min(left, 0.5))
            return found

    def in_conversation(self, conversation: str) -> list[Sent]:
        with self._cond:
            return [s for s in self.sent if s.conversation == conversation]

    def of(self, path: str, status: int | None = None) -> list[Call]:
        with self._cond:
            return [
                c for c in self.calls if c.path == path and (status is None or c.status == status)
            ]

    def card_of(self, sent: Sent) -> Card:
        assert sent.card is not None
        return self.cards[sent.card]

    def summary(self) -> list[tuple[str, str, str]]:
        return [(s.conversation, s.via, s.title[:60]) for s in self.sent]
