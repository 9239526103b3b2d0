"""The Feishu / Lark adapter: messages to the bot in private chats and groups, answered as cards.

Built on lark-oapi, an extra (``pip install 'hub-mirror-bot[feishu]'``): this module imports
it only once the adapter is built, so an install without it still reads the settings.

Events: ``im.message.receive_v1`` (a private message, or a group message that mentions the
bot) and ``card.action.trigger`` (a button pressed), either over the long connection
(``FEISHU_MODE=ws``, the default: no public URL) or posted to ``/feishu/events`` on
``FEISHU_PORT`` (``http``), where the SDK's dispatcher answers the URL verification, checks
the verification token, decrypts with ``FEISHU_ENCRYPT_KEY`` and checks its signature. An
event delivered twice (the same ``event_id``) is acted on once.

Answers: every post is a reply to the request (in its thread when the request was in one), an
interactive card (:mod:`adapters.feishu_card`); the live message is that card patched in
place. Calls go through the HTTP Open API (the SDK's async methods, with a tenant token this
module fetches and caches itself), never through the socket.

Threads and loops: lark-oapi's long-connection client runs its own event loop, captured in a
module-level variable at import; its ``start()`` blocks, fails inside a running loop and has no
``stop()``, and its token and endpoint requests are blocking ``requests`` calls. So it runs in a
thread of its own with a loop of its own (:class:`_Socket`), hands each event to the bot's loop
with ``asyncio.run_coroutine_threadsafe``, and is stopped by stopping that loop. One such client
can run per process (the SDK's loop variable is one). In ``http`` mode the dispatcher runs in a
worker thread for each request, so both modes reach the bot the same way.

Rate limits: a message may be patched at most 5 times a second, and a chat takes about 5
messages a second; each conversation tells that budget (:class:`bot.pacing.Pace`), and
``bot.pacing`` sends under it. A 429 (Feishu's ``99991400`` with ``x-ogw-ratelimit-reset``) or
the IM frequency limit (``230020``) is :class:`bot.chat.RateLimited`, waited out by
``bot.delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, SecretStr, field_validator, model_validator

from adapters import feishu_card
from adapters.feishu_card import Audience, Card, Mention
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
from bot.delivery import deliver, reconnecting
from bot.i18n import LANGUAGES
from bot.pacing import Budget, Pace
from bot.plugins import AdapterPlugin, AdapterSettings, Extra, SettingsPlugin
from bot.redelivery import Seen
from bot.view import MessageView, Tone
from mirror.tasks import TaskSet

if TYPE_CHECKING:
    import lark_oapi

log = logging.getLogger(__name__)

PLATFORM = "feishu"
FEISHU = "https://open.feishu.cn"
LARK = "https://open.larksuite.com"
EVENTS_PATH = "/feishu/events"
EDIT_INTERVAL = 1.0
"""Feishu patches a card at most 5 times a second; once a second keeps the chat's budget free."""
CHAT_BUDGET = Budget(5, 1.0)
"""About 5 messages a second per chat (posts, replies and patches together here)."""
APP_BUDGET = Budget(50, 1.0)
"""The app's sending limit over all chats (50 a second)."""
_TOKEN_MARGIN = 600.0
"""Seconds before its expiry that a tenant token is replaced (Feishu issues a new one then)."""
_RATE_LIMITED = frozenset({99991400, 230020})
_BAD_TOKEN = frozenset({99991661, 99991663, 99991664, 99991665, 99991668})
_LARK_HEADERS = (
    "X-Lark-Request-Timestamp",
    "X-Lark-Request-Nonce",
    "X-Lark-Signature",
    "X-Request-Id",
)
"""The headers the SDK's dispatcher reads, by their exact names (it looks them up in a dict)."""


# -- settings ----------------------------------------------------------------------------------


class FeishuSettings(AdapterSettings, env_prefix="FEISHU_"):
    """``FEISHU_*``: the adapter runs when any of them is set, and then needs the app's
    credentials (a self-built app of the Feishu or Lark open platform)."""

    app_id: str | None = None
    app_secret: SecretStr | None = None
    domain: str = FEISHU
    """The open platform: Feishu's, Lark's (``https://open.larksuite.com``), or a stand-in."""
    mode: Literal["ws", "http"] = "ws"
    port: int = Field(default=3001, ge=1, le=65535)
    """``http`` mode listens here, at ``/feishu/events``."""
    verification_token: SecretStr | None = None
    encrypt_key: SecretStr | None = None

    @field_validator("domain")
    @classmethod
    def _origin(cls, value: str) -> str:
        """What the SDK accepts: ``https://host[:port]`` (``http`` only on the loopback)."""
        parts = urlsplit(value.strip())
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not (
            (parts.scheme == "https" or (parts.scheme == "http" and loopback))
            and parts.hostname
            and "@" not in parts.netloc
            and parts.path in ("", "/")
            and not parts.query
            and not parts.fragment
        ):
            raise ValueError(
                f"must be the open platform's address without a path, {FEISHU} or {LARK} "
                f"(plain http only on 127.0.0.1), not {value!r}"
            )
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _complete(self) -> FeishuSettings:
        if not self.model_fields_set:
            return self
        if not self.app_id:
            raise ValueError(
                f"{self.asked_by} is set but FEISHU_APP_ID is not: set the app's App ID "
                "(cli_...) and FEISHU_APP_SECRET, from its Credentials page"
            )
        if self.app_secret is None or not self.app_secret.get_secret_value():
            raise ValueError("FEISHU_APP_ID is set but FEISHU_APP_SECRET is not: set both")
        if self.mode == "http" and not self.verification_token:
            raise ValueError(
                "FEISHU_MODE is http but FEISHU_VERIFICATION_TOKEN is not set: set the token "
                "from the app's Events and Callbacks page, so that only Feishu's events count"
            )
        return self

    def build(self) -> FeishuAdapter:
        return FeishuAdapter.from_settings(self)

    async def check(self) -> str:
        return await self.build().check()


plugin: AdapterPlugin = SettingsPlugin(FeishuSettings, extra=Extra("feishu", ("lark_oapi",)))
"""The ``hub_mirror_bot.adapters`` entry point."""


# -- the Open API ------------------------------------------------------------------------------


class Refused(Undeliverable):
    """Feishu answered with an error code no retry changes (``code``: Feishu's number)."""


class _OneLine(logging.Filter):
    """lark-oapi logs a traceback for every request it refuses (a forged event): one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _sdk_logging() -> None:
    """The SDK's log records go to ours (redacted, one line), not to its own stdout handler."""
    sdk = logging.getLogger("Lark")
    for handler in list(sdk.handlers):
        sdk.removeHandler(handler)
    if not any(isinstance(f, _OneLine) for f in sdk.filters):
        sdk.addFilter(_OneLine())
    sdk.setLevel(logging.WARNING)


def _body(raw: Any) -> dict[str, Any]:
    """A raw answer's JSON body; an empty dict when it is none."""
    try:
        found = json.loads(bytes(raw.content or b"{}"))
    except (ValueError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def _header(raw: Any, name: str) -> str | None:
    for key, value in (getattr(raw, "headers", None) or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _failure(raw: Any, body: Mapping[str, Any]) -> Exception:
    """An error answer in the port's terms."""
    status = int(getattr(raw, "status_code", 0) or 0)
    code = body.get("code") if isinstance(body.get("code"), int) else 0
    message = str(body.get("msg") or "")
    if status == 429 or code in _RATE_LIMITED:
        reset = _header(raw, "x-ogw-ratelimit-reset")
        try:
            retry_after = float(reset) if reset is not None else 1.0
        except ValueError:
            retry_after = 1.0
        return RateLimited(max(retry_after, 0.1))
    if status >= 500 or (not code and status != 200):
        return ChatUnavailable(f"Feishu answered {status} ({code or message or 'no body'})")
    return Refused(f"Feishu refused: {code} {message}".strip(), code=str(code))


class _Api:
    """The Open API calls the adapter makes, through the SDK's async client, with a tenant
    token fetched (without blocking) and cached here; failures in the port's terms."""

    def __init__(self, client: lark_oapi.Client, app_id: str, app_secret: str) -> None:
        self.client = client
        self._app_id = app_id
        self._app_secret = app_secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def _send(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """One SDK call; its transport failures as :class:`ChatUnavailable`."""
        import httpx

        try:
            return await call()
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise ChatUnavailable(f"Feishu did not answer ({type(exc).__name__})") from None
        except ValueError:  # the SDK parses every answer as JSON: this one was not
            raise ChatUnavailable("Feishu answered something that is not JSON") from None

    async def fresh_token(self) -> str:
        """``auth/v3/tenant_access_token/internal``: one call, as ``mirror-bot check`` makes."""
        from lark_oapi.api.auth.v3 import (
            InternalTenantAccessTokenRequest,
            InternalTenantAccessTokenRequestBody,
        )

        request = (
            InternalTenantAccessTokenRequest.builder()
            .request_body(
                InternalTenantAccessTokenRequestBody.builder()
                .app_id(self._app_id)
                .app_secret(self._app_secret)
                .build()
            )
            .build()
        )
        tokens = self.client.auth.v3.tenant_access_token
        response = await self._send(partial(tokens.ainternal, request))
        body = _body(response.raw)  # the token is beside "code", where the SDK's model drops it
        token = body.get("tenant_access_token")
        if body.get("code") != 0 or not isinstance(token, str):
            raise _failure(response.raw, body)
        expire = body.get("expire")
        lasts = float(expire) if isinstance(expire, int | float) else 7200.0
        self._token, self._expires = token, time.monotonic() + max(lasts - _TOKEN_MARGIN, 60.0)
        return token

    async def token(self) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            return await self.fresh_token()

    async def call(self, method: Callable[[Any, Any], Awaitable[Any]], request: Any) -> Any:
        """``method(request, option)`` with the tenant token; the answer's ``data`` on
        success. A token Feishu no longer takes is dropped, and the call may be retried."""
        from lark_oapi.core.model import RequestOption

        option = RequestOption.builder().tenant_access_token(await self.token()).build()
        response = await self._send(partial(method, request, option))
        body = _body(response.raw)
        if response.code == 0:
            return body
        if response.code in _BAD_TOKEN:
            self._token = None
            raise ChatUnavailable(f"Feishu no longer takes the tenant token ({response.code})")
        raise _failure(response.raw, body)

    async def raw(self, method: str, uri: str, body: Any = None) -> dict[str, Any]:
        """An Open API call the SDK has no model for (the bot's own info, ephemeral cards)."""
        from lark_oapi.core.enum import AccessTokenType, HttpMethod
        from lark_oapi.core.model import BaseRequest

        builder = (
            BaseRequest.builder()
            .http_method(HttpMethod[method])
            .uri(uri)
            .token_types({AccessTokenType.TENANT})
        )
        if body is not None:
            builder = builder.body(body)
        return dict(await self.call(self.client.arequest, builder.build()))

    # -- messages --------------------------------------------------------------------------

    async def reply(self, message_id: str, card: Card, in_thread: bool) -> tuple[str, str]:
        """``im/v1/messages/:id/reply``: ``(message_id, chat_id)`` of the card posted."""
        from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

        request = (
            ReplyMessageRequest.builder()
            .message_id(message_id)
            .request_body(
                ReplyMessageRequestBody.builder()
                .content(_content(card))
                .msg_type("interactive")
                .reply_in_thread(in_thread)
                .build()
            )
            .build()
        )
        return _posted(await self.call(self.client.im.v1.message.areply, request))

    async def create(self, receive_id_type: str, receive_id: str, card: Card) -> tuple[str, str]:
        """``im/v1/messages``: a card in a chat (``chat_id``) or to a person (``open_id``)."""
        from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

        request = (
            CreateMessageRequest.builder()
            .receive_id_type(receive_id_type)
            .request_body(
                CreateMessageRequestBody.builder()
                .receive_id(receive_id)
                .content(_content(card))
                .msg_type("interactive")
                .build()
            )
            .build()
        )
        return _posted(await self.call(self.client.im.v1.message.acreate, request))

    async def patch(self, message_id: str, card: Card) -> None:
        """``PATCH im/v1/messages/:id``: the card replaced for everybody (``update_multi``)."""
        from lark_oapi.api.im.v1 import PatchMessageRequest, PatchMessageRequestBody

        request = (
            PatchMessageRequest.builder()
            .message_id(message_id)
            .request_body(PatchMessageRequestBody.builder().content(_content(card)).build())
            .build()
        )
        await self.call(self.client.im.v1.message.apatch, request)

    async def ephemeral(self, chat_id: str, open_id: str, card: Card) -> None:
        """A card in a group only ``open_id`` sees (``ephemeral/v1/send``)."""
        body = {"chat_id": chat_id, "open_id": open_id, "msg_type": "interactive", "card": card}
        await self.raw("POST", "/open-apis/ephemeral/v1/send", body)

    async def bot_open_id(self) -> tuple[str, str]:
        """``bot/v3/info``: the bot's open_id (its mentions) and its name."""
        bot = (await self.raw("GET", "/open-apis/bot/v3/info")).get("bot") or {}
        return str(bot.get("open_id") or ""), str(bot.get("app_name") or "")


def _content(card: Card) -> str:
    return json.dumps(card, ensure_ascii=False, separators=(",", ":"))


def _posted(body: Mapping[str, Any]) -> tuple[str, str]:
    data = body.get("data") or {}
    message_id = str(data.get("message_id") or "")
    if not message_id:
        raise ChatUnavailable("Feishu posted a message without saying its id")
    return message_id, str(data.get("chat_id") or "")


# -- the chat port -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Everything an answer needs to know, kept in a reply's ``ref`` to outlive a restart."""

    chat_id: str
    request_id: str | None
    """The message answered (every post replies to it); None: post in the chat itself."""
    in_thread: bool = False
    requester: str | None = None
    group: bool = True
    receive_id: tuple[str, str] | None = None
    """``("open_id", ou_...)``: a private conversation the bot opened (no chat id yet)."""

    @property
    def audience(self) -> Audience:
        return Audience(self.requester, {"g": int(self.group), "t": int(self.in_thread)})


@dataclass
class FeishuReply:
    api: _Api
    where: _Where
    message_id: str

    @property
    def ref(self) -> str:
        """``chat:message:request:thread:requester:group``: Feishu ids hold no colon."""
        w = self.where
        fields = (w.chat_id, self.message_id, w.request_id or "", str(int(w.in_thread)))
        return ":".join((*fields, w.requester or "", str(int(w.group))))

    async def edit(self, view: MessageView) -> None:
        await self.api.patch(self.message_id, feishu_card.single(view, self.where.audience))


def parse_ref(ref: str) -> _Where | None:
    parts = ref.split(":")
    if len(parts) != 6 or not parts[0] or not parts[1]:
        return None
    chat_id, _message, request_id, thread, requester, group = parts
    return _Where(chat_id, request_id or None, thread == "1", requester or None, group == "1")


@dataclass
class FeishuConversation:
    """Where one command's answers go: replies to its message (in its thread, if any)."""

    api: _Api
    where: _Where

    @property
    def edit_interval(self) -> float:
        return EDIT_INTERVAL

    @property
    def pace(self) -> Pace:
        chat = self.where.chat_id or ":".join(self.where.receive_id or ("", ""))
        return Pace(chat, CHAT_BUDGET, shared=APP_BUDGET)

    @property
    def languages(self) -> tuple[str, ...]:
        """A card carries every language at once (its ``i18n``): each reader sees theirs."""
        return LANGUAGES

    async def post(self, view: MessageView) -> Reply:
        """A card replying to the request; a long answer continues in further cards.

        Only the first may raise :class:`RateLimited` (the caller retries the post); the rest
        are delivered here, so a retry never sends the beginning twice."""
        first, *rest = feishu_card.parts(view, self.where.audience)
        message_id, chat_id = await self._send(first)
        for card in rest:
            await deliver(partial(self._send, card), what="continued answer", adapter=PLATFORM)
        where = self.where
        if not where.chat_id and chat_id:  # a private conversation: now it has its chat
            where = _Where(chat_id, None, requester=where.requester, group=False)
        return FeishuReply(self.api, where, message_id)

    async def _send(self, card: Card) -> tuple[str, str]:
        where = self.where
        if where.request_id is not None:
            return await self.api.reply(where.request_id, card, where.in_thread)
        kind, receive_id = where.receive_id or ("chat_id", where.chat_id)
        return await self.api.create(kind, receive_id, card)


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    """An ``im.message.receive_v1`` event, read out of the SDK's objects in the SDK's thread."""

    event_id: str
    app_tenant: str
    sender: str
    sender_tenant: str
    sender_type: str
    chat_id: str
    chat_type: str
    message_id: str
    thread_id: str
    message_type: str
    content: str
    mentions: tuple[Mention, ...]

    @classmethod
    def of(cls, data: Any) -> _Message:
        header, event = data.header, data.event
        sender, message = event.sender, event.message
        mentions = tuple(
            Mention(m.key or "", (m.id.open_id if m.id else None) or "", m.name or "")
            for m in message.mentions or ()
        )
        return cls(
            event_id=header.event_id or "",
            app_tenant=header.tenant_key or "",
            sender=(sender.sender_id.open_id if sender.sender_id else None) or "",
            sender_tenant=sender.tenant_key or "",
            sender_type=sender.sender_type or "",
            chat_id=message.chat_id or "",
            chat_type=message.chat_type or "",
            message_id=message.message_id or "",
            thread_id=message.thread_id or "",
            message_type=message.message_type or "",
            content=message.content or "",
            mentions=mentions,
        )


@dataclass(frozen=True)
class _Pressed:
    """A ``card.action.trigger`` callback: who pressed which of our buttons, under which card."""

    event_id: str
    app_tenant: str
    presser: str
    presser_tenant: str
    action_id: str
    chat_id: str
    message_id: str
    group: bool
    in_thread: bool

    @classmethod
    def of(cls, data: Any) -> _Pressed | None:
        header, event = data.header, data.event
        if event is None or event.action is None or event.operator is None:
            return None
        value = event.action.value or {}
        context = event.context
        if not isinstance(value, dict) or not value.get("id") or context is None:
            return None
        return cls(
            event_id=(header.event_id if header else None) or "",
            app_tenant=(header.tenant_key if header else None) or "",
            presser=event.operator.open_id or "",
            presser_tenant=event.operator.tenant_key or "",
            action_id=str(value["id"]),
            chat_id=context.open_chat_id or "",
            message_id=context.open_message_id or "",
            group=str(value.get("g", "1")) == "1",
            in_thread=str(value.get("t", "0")) == "1",
        )


# -- the long connection, in a thread of its own ------------------------------------------------

_ONE_SOCKET = threading.Lock()
"""lark-oapi's long-connection client takes its loop from a module variable: one per process."""
STOP_SECONDS = 10.0


class _Socket:
    """lark-oapi's ``ws.Client`` in a thread with a loop of its own.

    ``start()`` blocks that thread for good (it runs the SDK's loop until the loop is stopped);
    ``ended`` (on the bot's loop) gets its exception if it ends by itself (Feishu refused the
    app). :meth:`stop` stops the SDK's loop and closes the connection.
    """

    def __init__(self, client: Any, bot_loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._bot_loop = bot_loop
        self._loop = asyncio.new_event_loop()
        self._stopping = False
        self.ended: asyncio.Future[None] = bot_loop.create_future()
        self._thread = threading.Thread(target=self._run, name="feishu-socket", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import lark_oapi.ws.client as sdk_socket

        asyncio.set_event_loop(self._loop)
        sdk_socket.loop = self._loop  # the SDK's loop, captured at its import: this thread's
        error: BaseException | None = None
        try:
            self._client.start()  # blocks this thread only; ends when stop() stops the loop
        except BaseException as exc:
            error = exc
        finally:
            self._close_loop()
        if not self._stopping:
            with contextlib.suppress(RuntimeError):  # the bot's loop is closing too
                self._bot_loop.call_soon_threadsafe(self._ended, error)

    def _ended(self, error: BaseException | None) -> None:
        if self.ended.done():
            return
        if error is None:
            error = ChatUnavailable("Feishu's long connection ended")
        self.ended.set_exception(error)

    def _close_loop(self) -> None:
        """Cancel the SDK's tasks (receiving, pinging, reconnecting), close the connection
        (there is no public way: ``_disconnect``), then the loop."""
        loop = self._loop
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(self._client._disconnect())
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def stop(self) -> None:
        """Stop the SDK's loop until its thread ends. Stopping once may not be enough: after
        a failed first connect, ``start()`` runs the loop again to reconnect (unless told not
        to), and a blocking ``requests`` call in it holds the thread until it returns."""
        self._stopping = True
        self._client._auto_reconnect = False
        deadline = time.monotonic() + STOP_SECONDS
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):  # closed already
                self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 0.2)
        if self._thread.is_alive():
            log.warning("feishu: the long connection's thread did not stop; leaving it")


# -- the adapter -------------------------------------------------------------------------------


def _may_pass(exc: BaseException) -> bool:
    """At start-up: Feishu unreachable or busy, not credentials it refuses."""
    return isinstance(exc, ChatUnavailable | RateLimited)


class FeishuAdapter:
    name = PLATFORM

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        domain: str = FEISHU,
        mode: str = "ws",
        port: int = 3001,
        verification_token: str | None = None,
        encrypt_key: str | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        import lark_oapi  # the extra: imported only now, once the adapter is built

        _sdk_logging()
        self._app_id = app_id
        self._app_secret = app_secret
        self._domain = domain
        self.mode = mode
        self._port = port
        self._host = host
        self._verification_token = verification_token or ""
        self._encrypt_key = encrypt_key or ""
        client = (
            lark_oapi.Client.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .domain(domain)
            .enable_set_token(True)  # the token comes from _Api, never from a blocking fetch
            .log_level(lark_oapi.LogLevel.WARNING)
            .build()
        )
        self._api = _Api(client, app_id, app_secret)
        self._seen = Seen()
        self._commands = TaskSet(PLATFORM)
        self._handler: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bot_open_id: str | None = None

    @classmethod
    def from_settings(cls, settings: FeishuSettings) -> FeishuAdapter:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        if not settings.app_id or settings.app_secret is None:
            raise ConfigurationError("Set FEISHU_APP_ID and FEISHU_APP_SECRET.")
        return cls(
            app_id=settings.app_id,
            app_secret=settings.app_secret.get_secret_value(),
            domain=settings.domain,
            mode=settings.mode,
            port=settings.port,
            verification_token=secret(settings.verification_token),
            encrypt_key=secret(settings.encrypt_key),
        )

    # -- start-up ----------------------------------------------------------------------------

    async def check(self) -> str:
        """One call, ``tenant_access_token``, for ``mirror-bot check``: the credentials hold."""
        try:
            await self._api.fresh_token()
        except Refused as exc:
            raise ConfigurationError(
                f"Feishu refused FEISHU_APP_ID and FEISHU_APP_SECRET ({exc}); check the app's "
                "credentials and FEISHU_DOMAIN (Feishu or Lark)."
            ) from None
        except (ChatUnavailable, RateLimited) as exc:
            raise ConfigurationError(
                f"Feishu's Open API at {self._domain} did not answer ({exc}); check "
                "FEISHU_DOMAIN and HTTPS_PROXY."
            ) from None
        return f"app {self._app_id} at {self._domain} ({self.mode} mode)"

    async def _who_am_i(self) -> None:
        """The bot's open_id, to know its mentions; retried while Feishu cannot be reached,
        and a refusal (credentials, no bot capability) stops the start."""
        policy = reconnecting(_may_pass, f"feishu: the Open API at {self._domain}")
        try:
            found: tuple[str, str] = await policy.copy()(self._api.bot_open_id)
        except Refused as exc:
            raise ConfigurationError(
                f"Feishu refused the app FEISHU_APP_ID ({exc}); check its credentials and that "
                "the bot capability is enabled."
            ) from None
        self.bot_open_id = found[0] or None
        log.info("connected to Feishu at %s as %s (%s mode)", self._domain, found[1], self.mode)

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, handler: Handler) -> None:
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        await self._who_am_i()
        try:
            if self.mode == "http":
                await self._serve_http()
            else:
                await self._serve_socket()
        finally:
            self._handler = None
            await self._commands.aclose()

    def _dispatcher(self) -> Any:
        """The SDK's dispatcher: checks and decrypts (http mode) and routes to our callbacks."""
        import lark_oapi

        return (
            lark_oapi.EventDispatcherHandler.builder(self._encrypt_key, self._verification_token)
            .register_p2_im_message_receive_v1(self._on_message)
            .register_p2_card_action_trigger(self._on_card_action)
            .build()
        )

    async def _serve_socket(self) -> None:
        import lark_oapi

        client = lark_oapi.ws.Client(
            self._app_id,
            self._app_secret,
            log_level=lark_oapi.LogLevel.WARNING,  # at INFO it logs the URL, which holds a ticket
            event_handler=self._dispatcher(),
            domain=self._domain,
        )
        if not _ONE_SOCKET.acquire(blocking=False):
            raise ConfigurationError("Only one Feishu long connection can run in a process.")
        socket = _Socket(client, asyncio.get_running_loop())
        try:
            socket.start()
            log.info("feishu: long connection to %s", self._domain)
            try:
                await socket.ended
            except Exception as exc:
                raise self._socket_failure(exc) from None
        finally:
            await socket.stop()
            _ONE_SOCKET.release()

    def _socket_failure(self, exc: Exception) -> Exception:
        """The long connection ended by itself: Feishu refused the app (the SDK's
        ``ClientException``), or something else happened to it."""
        from lark_oapi.ws.exception import ClientException

        if isinstance(exc, ClientException):
            return ConfigurationError(
                f"Feishu refused the long connection for FEISHU_APP_ID ({exc}); check the "
                "app's credentials and that its events are delivered over the long connection."
            )
        return exc

    async def _serve_http(self) -> None:
        dispatcher = self._dispatcher()
        app = web.Application()
        app.router.add_post(EVENTS_PATH, partial(self._on_http, dispatcher))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
            log.info("serving Feishu events on port %d at %s", self._port, EVENTS_PATH)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _on_http(self, dispatcher: Any, request: web.Request) -> web.Response:
        """One event or card callback, checked by the SDK (in a worker thread: it decrypts)."""
        from lark_oapi.core.model import RawRequest

        raw = RawRequest()
        raw.uri = request.path
        raw.body = await request.read()
        raw.headers = {n: request.headers[n] for n in _LARK_HEADERS if n in request.headers}
        answer = await asyncio.to_thread(dispatcher.do, raw)
        return web.Response(
            status=answer.status_code or 500,
            body=answer.content or b"",
            content_type="application/json",
        )

    # -- events, from the SDK's thread to ours ------------------------------------------------

    def _on_message(self, data: Any) -> None:
        """``im.message.receive_v1`` (in the SDK's thread): handed to the bot's loop."""
        self._bridge(self._message(_Message.of(data)))

    def _on_card_action(self, data: Any) -> Any:
        """``card.action.trigger`` (in the SDK's thread): handed over, answered at once with
        nothing (Feishu waits 3 s at most; a refusal comes as a card only the presser sees)."""
        from lark_oapi.event.callback.model.p2_card_action_trigger import (
            P2CardActionTriggerResponse,
        )

        pressed = _Pressed.of(data)
        if pressed is not None:
            self._bridge(self._press(pressed))
        return P2CardActionTriggerResponse({})

    def _bridge(self, work: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            work.close()
            return
        asyncio.run_coroutine_threadsafe(work, loop)

    async def _message(self, message: _Message) -> None:
        handler = self._handler
        if handler is None or not self._seen.first_time(message.event_id):
            return
        if message.sender_type != "user" or not message.sender:
            return  # another app or bot
        group = message.chat_type != "p2p"
        if group and not feishu_card.mentions_bot(message.mentions, self.bot_open_id):
            return  # group chatter the app may see with the permission to read all of it
        text = feishu_card.message_text(message.message_type, message.content)
        if text is None:
            return
        incoming = Incoming(
            platform=PLATFORM,
            user_id=message.sender,
            user_name=message.sender,
            chat_id=message.chat_id,
            text=feishu_card.command_text(text, message.mentions, self.bot_open_id),
            is_group=group,
            closed_by_default=message.sender_tenant != message.app_tenant,  # another tenant's
        )
        where = _Where(
            message.chat_id,
            message.message_id,
            in_thread=bool(message.thread_id),
            requester=message.sender,
            group=group,
        )
        conversation = FeishuConversation(self._api, where)
        self._commands.spawn(handler(incoming, conversation), name="feishu-command")

    async def _press(self, pressed: _Pressed) -> None:
        handler = self._handler
        if handler is None or not self._seen.first_time(pressed.event_id):
            return

        async def answer_privately(text: str) -> None:
            card = feishu_card.single(MessageView(text, Tone.INFO))
            if pressed.group:
                await self._api.ephemeral(pressed.chat_id, pressed.presser, card)
            else:  # a private chat: only the presser reads it anyway
                await self._api.create("chat_id", pressed.chat_id, card)

        incoming = Incoming(
            platform=PLATFORM,
            user_id=pressed.presser,
            user_name=pressed.presser,
            chat_id=pressed.chat_id,
            text="",
            is_group=pressed.group,
            closed_by_default=pressed.presser_tenant != pressed.app_tenant,
            press=Press(pressed.action_id, answer_privately),
        )
        where = _Where(
            pressed.chat_id,
            pressed.message_id,  # answers reply to the card that carried the button
            in_thread=pressed.in_thread,
            requester=pressed.presser,
            group=pressed.group,
        )
        conversation = FeishuConversation(self._api, where)
        self._commands.spawn(handler(incoming, conversation), name="feishu-press")

    # -- restarts and messages nobody asked for ------------------------------------------------

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        where = parse_ref(ref)
        if where is None:
            return None
        message_id = ref.split(":")[1]
        return FeishuConversation(self._api, where), FeishuReply(self._api, where, message_id)

    async def open_chat(self, chat_id: str) -> Conversation:
        """Posts in the chat ``chat_id`` (``oc_...``; a refusal, the bot not being in it, comes
        with the first post: Feishu has no cheaper way to ask)."""
        if not chat_id.startswith("oc_"):
            raise Undeliverable(f"`{chat_id}` is not a Feishu chat id (oc_...)")
        return FeishuConversation(self._api, _Where(chat_id, None, group=True))

    async def open_private(self, user_id: str) -> Conversation:
        """Posts to the person ``user_id`` (an open_id, ``ou_...``) in their private chat with
        the bot."""
        if not user_id.startswith("ou_"):
            raise Undeliverable(f"`{user_id}` is not a Feishu open_id (ou_...)")
        where = _Where("", None, requester=user_id, group=False, receive_id=("open_id", user_id))
        return FeishuConversation(self._api, where)
