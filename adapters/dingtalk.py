"""The DingTalk (钉钉) adapter: an app robot, in groups (``@`` it) and in one-to-one chats.

Messages arrive over dingtalk-stream's WebSocket (``DINGTALK_MODE=stream``, the default: no
public URL) or as the robot's signed HTTP callbacks at ``/dingtalk/events`` on
``DINGTALK_PORT`` (``http``); ``adapters.dingtalk_gateway`` wraps the SDK's client, which this
module imports only to serve in stream mode. Everything else is DingTalk's Open API, called
here with aiohttp (the SDK's own calls block on ``requests`` without a timeout, and give up
on errors silently).

Answers go where the question was. A message brings a ``sessionWebhook`` to answer through
without a token; it expires (after about 90 minutes), so what a conversation needs to post
without it (the conversation, the requester's staffId, the robot's code) is in every reply's
``ref``, and the Open API takes over when the webhook has expired, after a restart, and for
whatever the bot posts unasked (:class:`bot.chat.Addressable`).

Live progress: with ``DINGTALK_CARD_TEMPLATE_ID``, an interactive card of that template is
updated in place and its buttons call back (on the stream, or at ``/dingtalk/cards``);
without, a robot message cannot be edited, so there is one message at the start and one at
the end (:class:`bot.chat.EditsInPlace`), and each button is shown as the command it stands
for.

Who: ``dingtalk:<staffId>`` and ``dingtalk:<conversationId>`` in the allowlists. The app's
own organisation may ask by default (an internal app); a sender without a staffId, or from
another organisation (an external contact), is refused unless allowlisted. A message or
callback older than an hour is ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientError, web
from pydantic import Field, SecretStr, field_validator

from adapters.dingtalk_text import card_params, command_text, markdown, title_text
from bot.chat import (
    ChatUnavailable,
    ConfigurationError,
    Conversation,
    Handler,
    Incoming,
    Press,
    RateLimited,
    Reply,
    Undeliverable,
)
from bot.delivery import reconnecting
from bot.pacing import Budget, Pace
from bot.plugins import AdapterPlugin, AdapterSettings, Extra, SettingsPlugin
from bot.redelivery import Seen
from bot.view import MessageView, Tone
from mirror.tasks import TaskSet

log = logging.getLogger(__name__)

PLATFORM = "dingtalk"
EVENTS_PATH = "/dingtalk/events"
CARDS_PATH = "/dingtalk/cards"
MESSAGE_TOPIC = "/v1.0/im/bot/messages/get"
"""The stream topic of messages to the robot (``dingtalk_stream.ChatbotMessage.TOPIC``)."""
CARD_TOPIC = "/v1.0/card/instances/callback"
"""The stream topic of card button presses (``dingtalk_stream.CallbackHandler``)."""
CARD_ROUTE_KEY = "hub-mirror-bot"
"""In http mode, the ``callbackRouteKey`` our cards are created with: the operator registers
the public ``/dingtalk/cards`` URL under it (docs/chat-platforms.md)."""

MAX_AGE = 3600.0
"""Seconds after which a message or callback is refused: DingTalk's own rule for its
callbacks' ``timestamp``, applied to everything that arrives."""
WEBHOOK_MARGIN = 60.0
"""A ``sessionWebhook`` this close to its expiry is not used: the Open API answers instead."""
CARD_EDIT_INTERVAL = 3.0
"""Seconds between two updates of a card (DingTalk publishes no figure; the chat's budget
below is the real limit)."""
CHAT_BUDGET = Budget(20, 60.0)
"""Per conversation: 20 messages a minute, DingTalk's published limit for custom (webhook)
robots. The limit of app robots, which this bot is, is not published; the custom robots'
figure is the safe guess, and card updates are counted in it too."""
APP_BUDGET = Budget(20, 1.0)
"""For the whole app: 20 Open API calls a second, the QPS of DingTalk's standard edition."""
API_TIMEOUT = aiohttp.ClientTimeout(total=30)
DEFAULT_RETRY_AFTER = 3.0
"""Seconds to wait after a 429 that does not say how long."""
_THROTTLED = ("throttling", "qpslimit", "ratelimit", "flowcontrol")
"""Words in an Open API error ``code`` that mean "too many calls, try later"."""
_WEBHOOK_THROTTLED = frozenset({130101, 90018, 90019})
"""``errcode`` of a session webhook sending too fast (130101: over 20 a minute)."""
_WEBHOOK_HOSTS = frozenset({"oapi.dingtalk.com"})
"""Where a ``sessionWebhook`` may point (besides the Open API's own host): the bot posts to
it without a token, but posts nowhere a forged message names."""


class DingTalkSettings(AdapterSettings, env_prefix="DINGTALK_"):
    """``DINGTALK_*``: the adapter runs when any of them is set."""

    client_id: str | None = None
    """The app's Client ID (AppKey); also its robot's code."""
    client_secret: SecretStr | None = None
    mode: Literal["stream", "http"] = "stream"
    """``stream``: dingtalk-stream's WebSocket (no public URL); ``http``: signed callbacks."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """``http`` mode listens here: ``/dingtalk/events`` and ``/dingtalk/cards``."""
    api_url: str = "https://api.dingtalk.com"
    """The Open API (and the stream gateway's opening call); tests name a local stand-in."""
    card_template_id: str | None = None
    """The app's card template for live progress and buttons; without, plain messages."""

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (https://api.dingtalk.com)")
        return value.rstrip("/")

    @field_validator("client_id", "card_template_id")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty; unset it or give a value")
        return value.strip() if value is not None else None

    def build(self) -> DingTalkAdapter:
        return DingTalkAdapter.from_settings(self)

    async def check(self) -> str:
        return await self.build().check()


plugin: AdapterPlugin = SettingsPlugin(
    DingTalkSettings, extra=Extra("dingtalk", ("dingtalk_stream",))
)
"""The ``hub_mirror_bot.adapters`` entry point; dingtalk-stream comes in the ``dingtalk`` extra."""


# -- the Open API ----------------------------------------------------------------------------


def _error_code(body: Any) -> str:
    return str(body.get("code") or "") if isinstance(body, dict) else ""


def _port_error(status: int, body: Any, headers: Any) -> Exception:
    """A refused Open API call as the port sees it: RateLimited, ChatUnavailable or
    Undeliverable."""
    code = _error_code(body)
    if status == 429 or any(word in code.lower() for word in _THROTTLED):
        try:
            retry_after = float(headers.get("Retry-After", DEFAULT_RETRY_AFTER))
        except (TypeError, ValueError):
            retry_after = DEFAULT_RETRY_AFTER
        return RateLimited(retry_after)
    if status >= 500:
        return ChatUnavailable(f"DingTalk answered {status}")
    return Undeliverable(f"DingTalk refused: {code or status}", code=code)


class _Refused(Exception):
    """The access token was refused: the app's credentials are wrong."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{code or status}")
        self.status = status
        self.code = code


class OpenApi:
    """DingTalk's Open API, the calls the adapter makes, failures in the port's terms.

    One session per call (as slack_sdk does): nothing to close whoever calls last, a reply
    posted during shutdown included. The access token is fetched once and kept until five
    minutes before it expires; a 401 drops it.
    """

    def __init__(self, base: str, client_id: str, client_secret: str) -> None:
        self.base = base.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trust_env=True, timeout=API_TIMEOUT)

    async def token(self) -> str:
        """The app's access token; raises :class:`_Refused` for wrong credentials."""
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                body = {"appKey": self.client_id, "appSecret": self._secret}
                async with (
                    self._session() as session,
                    session.post(f"{self.base}/v1.0/oauth2/accessToken", json=body) as response,
                ):
                    answer = await _json(response)
                    if response.status >= 500:
                        raise ChatUnavailable(f"DingTalk answered {response.status}")
                    if response.status != 200 or not answer.get("accessToken"):
                        raise _Refused(response.status, _error_code(answer))
                self._token = str(answer["accessToken"])
                lifetime = float(answer.get("expireIn") or 7200)
                self._expires = time.monotonic() + max(lifetime - 300, 60)
            return self._token

    async def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call with the token; raises RateLimited, ChatUnavailable or Undeliverable."""
        try:
            token = await self.token()
            async with (
                self._session() as session,
                session.request(
                    method,
                    self.base + path,
                    json=body,
                    headers={"x-acs-dingtalk-access-token": token},
                ) as response,
            ):
                answer = await _json(response)
                if response.status == 401:  # expired early or revoked: fetch a new one
                    self._token = None
                    raise ChatUnavailable("DingTalk refused the access token")
                if response.status != 200:
                    raise _port_error(response.status, answer, response.headers)
                return answer
        except _Refused as exc:
            raise Undeliverable(f"DingTalk refused the app's credentials ({exc})") from None
        except (TimeoutError, ClientError) as exc:
            raise ChatUnavailable(f"DingTalk did not answer ({type(exc).__name__})") from None

    async def webhook(self, url: str, body: dict[str, Any]) -> None:
        """A post through a message's ``sessionWebhook`` (no token: the URL is the grant)."""
        try:
            async with self._session() as session, session.post(url, json=body) as response:
                answer = await _json(response)
                if response.status != 200:
                    raise _port_error(response.status, answer, response.headers)
        except (TimeoutError, ClientError) as exc:
            raise ChatUnavailable(f"DingTalk did not answer ({type(exc).__name__})") from None
        errcode = answer.get("errcode", 0)
        if errcode in _WEBHOOK_THROTTLED:
            raise RateLimited(DEFAULT_RETRY_AFTER)
        if errcode:
            raise Undeliverable(f"DingTalk refused: {answer.get('errmsg')}", code=str(errcode))

    def may_post_to(self, url: str) -> bool:
        host = urlsplit(url).hostname
        return host in _WEBHOOK_HOSTS or host == urlsplit(self.base).hostname


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        answer = await response.json(content_type=None)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


# -- where answers go ------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """A conversation and who asked in it: all a post needs once the webhook is gone."""

    conversation_id: str
    group: bool
    staff_id: str | None
    """The requester (``@``-ed on notify); in a one-to-one chat, whom the bot writes to."""
    robot_code: str

    def ref(self, card: str | None = None) -> str:
        """Compact JSON: conversation ids are base64 (``+/=``), staffIds anything."""
        fields = [self.conversation_id, int(self.group), self.staff_id or "", self.robot_code]
        return json.dumps([*fields, card or ""], separators=(",", ":"), ensure_ascii=False)


def parse_ref(ref: str) -> tuple[Where, str | None] | None:
    """The conversation and card (if any) behind :meth:`Where.ref`, or None."""
    try:
        conversation, group, staff, robot, card = json.loads(ref)
    except (ValueError, TypeError):
        return None
    if not isinstance(conversation, str) or not conversation or not isinstance(robot, str):
        return None
    where = Where(conversation, bool(group), str(staff) or None, robot)
    return where, (str(card) or None)


@dataclass(frozen=True)
class Webhook:
    url: str
    expires: float
    """Wall-clock seconds (DingTalk sends milliseconds)."""

    @property
    def usable(self) -> bool:
        return time.time() < self.expires - WEBHOOK_MARGIN


class DingTalkConversation:
    """One conversation: the webhook while it lasts, then the Open API; a card per message
    when the app has a template, else plain markdown messages that cannot be edited."""

    def __init__(
        self,
        api: OpenApi,
        where: Where,
        *,
        webhook: Webhook | None = None,
        template: str | None = None,
        callback: Literal["STREAM", "HTTP"] = "STREAM",
        cards: _Cards | None = None,
    ) -> None:
        self.api = api
        self.where = where
        self.webhook = webhook
        self.template = template
        self._callback = callback
        self._cards = cards

    @property
    def edit_interval(self) -> float:
        return CARD_EDIT_INTERVAL

    @property
    def edits_in_place(self) -> bool:
        return self.template is not None

    @property
    def pace(self) -> Pace:
        return Pace(self.where.conversation_id, CHAT_BUDGET, shared=APP_BUDGET)

    async def post(self, view: MessageView) -> Reply:
        if self.template is not None:
            return await self._card(view, self.template)
        await self.send(view)
        return MessageReply(self)

    async def send(self, view: MessageView) -> None:
        """A markdown message: through the webhook while it lasts, else the Open API (which
        cannot ``@`` anyone in a markdown message)."""
        title = title_text(view)
        if self.webhook is not None and self.webhook.usable:
            mention = self.where.staff_id if self.where.group else None
            message = {"title": title, "text": markdown(view, mention=mention)}
            body: dict[str, Any] = {"msgtype": "markdown", "markdown": message}
            if view.notify and mention:
                body["at"] = {"atUserIds": [mention]}
            try:
                await self.api.webhook(self.webhook.url, body)
                return
            except Undeliverable as exc:  # expired early, or gone: the Open API still can
                log.info("dingtalk: the session webhook refused (%s); using the Open API", exc)
                self.webhook = None
        await self._send_by_api(title, markdown(view))

    async def _send_by_api(self, title: str, text: str) -> None:
        where = self.where
        param = json.dumps({"title": title, "text": text}, ensure_ascii=False)
        common = {"robotCode": where.robot_code, "msgKey": "sampleMarkdown", "msgParam": param}
        if where.group:
            await self.api.call(
                "POST",
                "/v1.0/robot/groupMessages/send",
                {**common, "openConversationId": where.conversation_id},
            )
            return
        if not where.staff_id:
            raise Undeliverable("DingTalk: nobody to write to (the sender has no staffId)")
        answer = await self.api.call(
            "POST", "/v1.0/robot/oToMessages/batchSend", {**common, "userIds": [where.staff_id]}
        )
        if where.staff_id in (answer.get("flowControlledStaffIdList") or ()):
            raise RateLimited(DEFAULT_RETRY_AFTER)
        if where.staff_id in (answer.get("invalidStaffIdList") or ()):
            raise Undeliverable(f"DingTalk: {where.staff_id} cannot be written to", "invalid")

    async def _card(self, view: MessageView, template: str) -> CardReply:
        """A new card of the app's template in this conversation (created and delivered in
        one call); ``@`` the requester when the view asks to notify."""
        where = self.where
        out_track_id = f"hmb-{uuid.uuid4().hex}"
        body: dict[str, Any] = {
            "cardTemplateId": template,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": card_params(view)},
            "callbackType": self._callback,
            "userIdType": 1,  # staffIds, in deliveries and in the callbacks of presses
        }
        if self._callback == "HTTP":
            body["callbackRouteKey"] = CARD_ROUTE_KEY
        if where.group:
            deliver: dict[str, Any] = {"robotCode": where.robot_code}
            if view.notify and where.staff_id:
                deliver["atUserIds"] = {where.staff_id: where.staff_id}
            body |= {
                "openSpaceId": f"dtv1.card//IM_GROUP.{where.conversation_id}",
                "imGroupOpenSpaceModel": {"supportForward": True},
                "imGroupOpenDeliverModel": deliver,
            }
        else:
            if not where.staff_id:
                raise Undeliverable("DingTalk: nobody to write to (the sender has no staffId)")
            body |= {
                "openSpaceId": f"dtv1.card//IM_ROBOT.{where.staff_id}",
                "imRobotOpenSpaceModel": {"supportForward": True},
                "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": where.robot_code},
            }
        await self.api.call("POST", "/v1.0/card/instances/createAndDeliver", body)
        if self._cards is not None:
            self._cards.remember(out_track_id, where)
        return CardReply(self.api, where, out_track_id)


@dataclass
class CardReply:
    """A card the bot delivered: updated in place."""

    api: OpenApi
    where: Where
    out_track_id: str

    @property
    def ref(self) -> str:
        return self.where.ref(self.out_track_id)

    async def edit(self, view: MessageView) -> None:
        body = {
            "outTrackId": self.out_track_id,
            "cardData": {"cardParamMap": card_params(view)},
            "cardUpdateOptions": {"updateCardDataByKey": True},
        }
        await self.api.call("PUT", "/v1.0/card/instances", body)


@dataclass
class MessageReply:
    """A robot message, which cannot be edited. The live message does not try
    (``edits_in_place`` is false); an edit the bot still makes with a final state (the store
    failed after the acknowledgement) is posted as a message of its own, progress never."""

    conversation: DingTalkConversation

    @property
    def ref(self) -> str:
        return self.conversation.where.ref()

    async def edit(self, view: MessageView) -> None:
        if view.tone is not Tone.WORKING:
            await self.conversation.send(view)


@dataclass
class _Cards:
    """Recent cards' conversations, to answer a press there (the callback names the card)."""

    size: int = 2048
    where: OrderedDict[str, Where] = field(default_factory=OrderedDict)

    def remember(self, out_track_id: str, where: Where) -> None:
        self.where[out_track_id] = where
        while len(self.where) > self.size:
            self.where.popitem(last=False)

    def get(self, out_track_id: str) -> Where | None:
        return self.where.get(out_track_id)


# -- HTTP callbacks ----------------------------------------------------------------------------


def sign(secret: str, timestamp: str) -> str:
    """DingTalk's signature of a callback: base64(HMAC-SHA256(secret, timestamp + "\\n" +
    secret)). It covers the time, not the body: a message id is acted on once."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def signed_recently(secret: str, timestamp: str | None, signature: str | None) -> bool:
    """Headers of a genuine callback: a ``timestamp`` (ms) within the hour, and its ``sign``."""
    if not timestamp or not signature:
        return False
    try:
        sent = int(timestamp) / 1000
    except ValueError:
        return False
    if abs(time.time() - sent) > MAX_AGE:
        return False
    return hmac.compare_digest(signature.encode(), sign(secret, timestamp).encode())


def _stale(sent_at_ms: Any) -> bool:
    try:
        return time.time() - int(sent_at_ms) / 1000 > MAX_AGE
    except (TypeError, ValueError):
        return False


# -- the adapter -------------------------------------------------------------------------------


def _refused(exc: _Refused) -> ConfigurationError:
    return ConfigurationError(
        f"DingTalk refused DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET ({exc}); "
        "check the app's credentials."
    )


def _may_pass(exc: BaseException) -> bool:
    """At start-up: DingTalk unreachable or in trouble, not credentials it refuses."""
    return isinstance(exc, TimeoutError | OSError | ClientError | ChatUnavailable)


class DingTalkAdapter:
    name = PLATFORM

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        mode: Literal["stream", "http"] = "stream",
        port: int | None = None,
        api_url: str = "https://api.dingtalk.com",
        card_template_id: str | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        if mode == "http" and port is None:
            raise ConfigurationError(
                "DINGTALK_MODE is http, but DINGTALK_PORT is not set; name the port the "
                "robot's callbacks reach."
            )
        self.mode = mode
        self.port = port
        """Where http mode listens (``DINGTALK_PORT``)."""
        self._host = host
        self._secret = client_secret
        self.api = OpenApi(api_url, client_id, client_secret)
        self._template = card_template_id
        self._cards = _Cards()
        self._seen = Seen()
        self._commands = TaskSet(PLATFORM)
        self._handler: Handler | None = None

    @classmethod
    def from_settings(cls, settings: DingTalkSettings) -> DingTalkAdapter:
        if not settings.client_id:
            raise ConfigurationError("DINGTALK_CLIENT_ID is not set; give the app's Client ID.")
        if settings.client_secret is None or not settings.client_secret.get_secret_value():
            raise ConfigurationError(
                "DINGTALK_CLIENT_SECRET is not set; give the app's Client Secret."
            )
        return cls(
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
            mode=settings.mode,
            port=settings.port,
            api_url=settings.api_url,
            card_template_id=settings.card_template_id,
        )

    # -- start-up ----------------------------------------------------------------------------

    async def check(self) -> str:
        """The access token once, for ``mirror-bot check``: the app, or one sentence why not."""
        try:
            await self.api.token()
        except _Refused as exc:
            raise _refused(exc) from None
        except (TimeoutError, ClientError, ChatUnavailable) as exc:
            raise ConfigurationError(
                f"DingTalk's Open API at {self.api.base} did not answer ({type(exc).__name__}); "
                "check DINGTALK_API_URL and HTTPS_PROXY."
            ) from None
        cards = "cards" if self._template else "messages"
        return f"app {self.api.client_id} ({self.mode} mode, {cards})"

    async def _who_am_i(self) -> None:
        """The access token, retried while DingTalk is unreachable: bad credentials fail fast."""
        try:
            await reconnecting(_may_pass, "DingTalk").copy()(self.api.token)
        except _Refused as exc:
            raise _refused(exc) from None
        log.info("connected to DingTalk as app %s (%s mode)", self.api.client_id, self.mode)

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, handler: Handler) -> None:
        await self._who_am_i()
        self._handler = handler
        try:
            if self.mode == "stream":
                await self._serve_stream()
            else:
                await self._serve_http()
        finally:
            await self._commands.aclose()

    async def _serve_stream(self) -> None:
        from adapters.dingtalk_gateway import StreamGateway  # the SDK, only when it is used

        topics = [MESSAGE_TOPIC, *([CARD_TOPIC] if self._template else [])]
        gateway = StreamGateway(
            client_id=self.api.client_id,
            client_secret=self._secret,
            api_url=self.api.base,
            topics=topics,
            on_frame=self._on_frame,
        )
        gateway.start()
        try:
            await gateway.ended()
            raise ChatUnavailable("DingTalk's stream client stopped")
        finally:
            await gateway.stop()

    def _on_frame(self, topic: str, data: dict[str, Any], sent_at_ms: int | None) -> None:
        """A stream frame, on our loop (the gateway acknowledged it already)."""
        if _stale(sent_at_ms):
            log.warning("dingtalk: ignored a %s frame older than an hour", topic)
        elif topic == MESSAGE_TOPIC:
            self._on_message(data)
        elif topic == CARD_TOPIC:
            self._on_press(data)

    async def _serve_http(self) -> None:
        app = web.Application()
        app.router.add_post(EVENTS_PATH, self._http_message)
        app.router.add_post(CARDS_PATH, self._http_press)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self.port).start()
            log.info("serving DingTalk callbacks on port %s at %s", self.port, EVENTS_PATH)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _http_body(self, request: web.Request) -> dict[str, Any] | None:
        """The JSON of a genuine callback, or None (refused: forged, stale or not JSON)."""
        headers = request.headers
        if not signed_recently(self._secret, headers.get("timestamp"), headers.get("sign")):
            log.warning("dingtalk: refused a callback with a wrong or stale signature")
            return None
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _http_message(self, request: web.Request) -> web.Response:
        body = await self._http_body(request)
        if body is None:
            return web.json_response({"error": "unauthorized"}, status=401)
        self._on_message(body)
        return web.json_response({})

    async def _http_press(self, request: web.Request) -> web.Response:
        body = await self._http_body(request)
        if body is None:
            return web.json_response({"error": "unauthorized"}, status=401)
        self._on_press(body)
        return web.json_response({})

    # -- what arrives ------------------------------------------------------------------------

    def _conversation(self, where: Where, webhook: Webhook | None = None) -> DingTalkConversation:
        return DingTalkConversation(
            self.api,
            where,
            webhook=webhook,
            template=self._template,
            callback="HTTP" if self.mode == "http" else "STREAM",
            cards=self._cards,
        )

    def _on_message(self, data: dict[str, Any]) -> None:
        """A message to the robot (the same JSON on the stream and in a callback)."""
        if _stale(data.get("createAt")):
            log.warning("dingtalk: ignored a message older than an hour")
            return
        if not self._seen.first_time(str(data.get("msgId") or "")):
            return
        text = _text_of(data)
        conversation_id = str(data.get("conversationId") or "")
        group = str(data.get("conversationType")) == "2"
        if text is None or not conversation_id or (group and data.get("isInAtList") is False):
            return
        staff = str(data.get("senderStaffId") or "") or None
        corp, own = data.get("senderCorpId"), data.get("chatbotCorpId")
        external = staff is None or bool(corp and own and corp != own)
        user = staff or str(data.get("senderId") or "")
        if not user:
            return
        incoming = Incoming(
            platform=PLATFORM,
            user_id=user,
            user_name=str(data.get("senderNick") or user),
            chat_id=conversation_id,
            text=command_text(text),
            is_group=group,
            closed_by_default=external,
        )
        robot = str(data.get("robotCode") or "") or self.api.client_id
        where = Where(conversation_id, group, staff, robot)
        self._spawn(incoming, self._conversation(where, self._webhook_of(data)))

    def _on_press(self, data: dict[str, Any]) -> None:
        """A button of one of our cards: answered in the card's conversation.

        The conversation is the one the card was delivered to, remembered while this process
        runs; after a restart, the callback's ``spaceType``/``spaceId`` say it.
        """
        user = str(data.get("userId") or "")
        action = _action_of(data)
        out_track_id = str(data.get("outTrackId") or "")
        where = self._cards.get(out_track_id) or self._space_of(data, user)
        if not user or not action or where is None:
            log.info("dingtalk: ignored a card callback it cannot place (%s)", out_track_id)
            return

        async def answer_privately(text: str) -> None:
            private = Where(user, False, user, where.robot_code)
            await self._conversation(private).send(MessageView(text))

        incoming = Incoming(
            platform=PLATFORM,
            user_id=user,
            user_name=user,
            chat_id=where.conversation_id,
            text="",
            is_group=where.group,
            press=Press(action, answer_privately),
        )
        asker = Where(where.conversation_id, where.group, user, where.robot_code)
        self._spawn(incoming, self._conversation(asker))

    def _space_of(self, data: dict[str, Any], user: str) -> Where | None:
        space, space_id = str(data.get("spaceType") or "").upper(), str(data.get("spaceId") or "")
        if not space_id:
            return None
        if space == "IM_GROUP":
            return Where(space_id, True, user, self.api.client_id)
        if space == "IM_ROBOT":
            return Where(space_id, False, user, self.api.client_id)
        return None

    def _webhook_of(self, data: dict[str, Any]) -> Webhook | None:
        """The message's ``sessionWebhook``, unless it points outside DingTalk."""
        url, expires = str(data.get("sessionWebhook") or ""), data.get("sessionWebhookExpiredTime")
        if not url or not self.api.may_post_to(url):
            return None
        try:
            return Webhook(url, int(str(expires)) / 1000)
        except ValueError:
            return None

    def _spawn(self, incoming: Incoming, conversation: DingTalkConversation) -> None:
        assert self._handler is not None
        work: Coroutine[Any, Any, None] = self._handler(incoming, conversation)
        self._commands.spawn(work, name="dingtalk-command")

    # -- restart recovery, and posting unasked -------------------------------------------------

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        parsed = parse_ref(ref)
        if parsed is None:
            return None
        where, card = parsed
        conversation = self._conversation(where)
        if card is not None:
            self._cards.remember(card, where)
            return conversation, CardReply(self.api, where, card)
        return conversation, MessageReply(conversation)

    async def open_chat(self, chat_id: str) -> Conversation:
        """A group by its openConversationId (``MIRROR_ADMIN_CHAT``), through the Open API."""
        return self._conversation(Where(chat_id, True, None, self.api.client_id))

    async def open_private(self, user_id: str) -> Conversation:
        """A person by staffId, in their one-to-one chat with the robot."""
        return self._conversation(Where(user_id, False, user_id, self.api.client_id))


def _text_of(data: dict[str, Any]) -> str | None:
    """The text of a ``text`` or ``richText`` message; None for pictures, files, audio."""
    kind = data.get("msgtype")
    if kind == "text":
        return str((data.get("text") or {}).get("content") or "")
    if kind == "richText":
        parts = ((data.get("content") or {}).get("richText")) or []
        return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)
    return None


def _action_of(data: dict[str, Any]) -> str | None:
    """The pressed button's id: the callback's ``action`` parameter (what our card template
    sends), else the first of its ``actionIds``."""
    content = data.get("content")
    try:
        parsed = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        return None
    private = parsed.get("cardPrivateData") if isinstance(parsed, dict) else None
    if not isinstance(private, dict):
        return None
    params = private.get("params") or {}
    action = params.get("action") if isinstance(params, dict) else None
    ids = private.get("actionIds") or []
    found = action or (ids[0] if ids else None)
    return str(found) if found else None
