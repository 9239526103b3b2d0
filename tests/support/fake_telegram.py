"""A local server that speaks enough of the Telegram Bot API for python-telegram-bot.

Calls arrive at ``ROOT/bot<token>/<method>`` as PTB sends them (form fields; nested objects
JSON-encoded), answers are ``{"ok": true, "result": ...}``. It serves scripted updates to
``getUpdates`` (long-poll waiting when there are none; an update is served until a later
offset confirms it, to the next process too, as Telegram does), keeps the text of every
message so an identical edit gets Telegram's "message is not modified" error, records every
call with its arrival time, and answers 429 with ``retry_after`` or a server error on demand.

With ``enforce=True`` it also holds the bot to Telegram's flood limits, as Telegram does:
sends and edits (arrivals, in any window) at most 20 a minute per group, 1 a second per
private chat and 30 a second overall; a call over a limit is answered 429 with the
``retry_after`` that makes room, and counted in ``refused``. Nothing inside the bot is
mocked: the real PTB ``Application`` talks HTTP to this server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from tests.support.local_http import serve_locally

T = TypeVar("T")

FLOOD_LIMITS = {"group": (20, 60.0), "private": (1, 1.0), "bot": (30, 1.0)}
"""Telegram's limits on sends and edits: (calls, seconds) per group, private chat, overall."""
PACED = frozenset({"sendMessage", "editMessageText"})

BOT_ID = 4242
BOT_USERNAME = "MirrorTestBot"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


@dataclass
class Call:
    method: str
    params: dict[str, str]
    at: float
    """``time.monotonic()`` on arrival."""
    status: int = 200
    message_id: int | None = None
    """For ``sendMessage``: the id this server gave the new message."""

    def value(self, key: str) -> Any:
        """A parameter as PTB meant it: JSON-decoded when it is JSON, else the string."""
        raw = self.params[key]
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    @property
    def chat_id(self) -> int:
        return int(self.params["chat_id"])

    @property
    def text(self) -> str:
        return self.params.get("text", "")

    @property
    def reply_to(self) -> int | None:
        if "reply_parameters" not in self.params:
            return None
        return int(self.value("reply_parameters")["message_id"])


@dataclass
class Chat:
    id: int
    type: str = "private"
    title: str | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            out["title"] = self.title
        else:
            out["first_name"] = f"user{self.id}"
        return out


@dataclass
class FakeTelegram:
    token: str
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    enforce: bool = False
    """Hold the bot to Telegram's flood limits (``FLOOD_LIMITS``)."""
    refused: int = 0
    """Calls answered 429 because they went over a flood limit (not the scripted ones)."""
    _arrivals: dict[int | str, deque[float]] = field(default_factory=dict)
    _outages: Counter[str] = field(default_factory=Counter)
    _outage_status: dict[str, int] = field(default_factory=dict)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _texts: dict[tuple[int, int], str] = field(default_factory=dict)
    _markups: dict[tuple[int, int], str | None] = field(default_factory=dict)
    _limits: Counter[str] = field(default_factory=Counter)
    _retry_after: dict[str, int] = field(default_factory=dict)
    _spared: Counter[str] = field(default_factory=Counter)
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _files: dict[str, bytes] = field(default_factory=dict)
    """``file_id`` -> content, for ``getFile`` and the download under ``/file/bot<token>/``."""
    downloads: list[str] = field(default_factory=list)
    """File paths the bot downloaded (with the right token)."""
    _runner: web.AppRunner | None = None
    _closed: bool = False
    _confirmed: int = 0
    """Updates below this id were confirmed (a later getUpdates offset): never served again."""
    started: set[int] = field(default_factory=set)
    """People who wrote to the bot privately: the only ones ``getChat`` knows (Telegram lets a
    bot write first only to someone who started it)."""

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner, port = await serve_locally(app, access_log=None)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._closed = True
        self._new_update.set()  # release a waiting long poll
        if self._runner is not None:
            await self._runner.cleanup()

    # -- scripting ----------------------------------------------------------------------------

    def message(
        self, chat: Chat, user_id: int, text: str, language: str | None = None
    ) -> dict[str, Any]:
        """A user's text message as an update (a command gets its ``bot_command`` entity);
        ``language`` is the sender's client language (``from.language_code``)."""
        sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        if language is not None:
            sender["language_code"] = language
        if chat.type == "private":
            self.started.add(user_id)
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat.json(),
            "from": sender,
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"update_id": len(self._updates) + 1, "message": message}

    def send(self, chat: Chat, user_id: int, text: str, language: str | None = None) -> int:
        """Queue a message for ``getUpdates``; returns its message id."""
        update = self.message(chat, user_id, text, language)
        self._updates.append(update)
        self._new_update.set()
        return int(update["message"]["message_id"])

    def press(self, chat: Chat, user_id: int, message_id: int, data: str) -> str:
        """Queue a press of the inline button ``data`` under the bot's message ``message_id``;
        returns the callback query's id (see :meth:`answers_to`)."""
        query_id = f"cq{next(self._ids)}"
        message = self._message(chat.id, message_id, self._texts.get((chat.id, message_id), ""))
        message["chat"] = chat.json()
        update = {
            "update_id": len(self._updates) + 1,
            "callback_query": {
                "id": query_id,
                "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
                "message": message,
                "chat_instance": str(chat.id),
                "data": data,
            },
        }
        self._updates.append(update)
        self._new_update.set()
        return query_id

    def send_document(
        self,
        chat: Chat,
        user_id: int,
        name: str,
        content: bytes,
        caption: str | None = None,
        *,
        mime_type: str = "text/plain",
        size: int | None = None,
    ) -> int:
        """Queue a document message (``caption`` as Telegram sends it); returns its id.
        ``size`` is the size Telegram announces, when it should differ from the content's."""
        update = self.message(chat, user_id, caption or "")
        message = update["message"]
        del message["text"]
        message.pop("entities", None)
        file_id = f"F{len(self._files) + 1:04d}"
        self._files[file_id] = content
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_name": name,
            "mime_type": mime_type,
            "file_size": len(content) if size is None else size,
        }
        if caption:
            message["caption"] = caption
            if caption.startswith("/"):
                length = len(caption.split(maxsplit=1)[0])
                message["caption_entities"] = [
                    {"type": "bot_command", "offset": 0, "length": length}
                ]
        self._updates.append(update)
        self._new_update.set()
        return int(message["message_id"])

    def rate_limit(self, method: str, times: int, retry_after: int = 1, after: int = 0) -> None:
        """Answer ``times`` calls of ``method`` with 429 and ``retry_after``, once ``after``
        more calls of it went through."""
        self._limits[method] += times
        self._retry_after[method] = retry_after
        self._spared[method] = after

    def outage(self, method: str, times: int, status: int = 502) -> None:
        """Answer the next ``times`` calls of ``method`` with a server error."""
        self._outages[method] += times
        self._outage_status[method] = status

    def _over_limit(self, call: Call) -> int | None:
        """Seconds until ``call`` fits Telegram's flood limits, or None (and it is counted)."""
        chat = call.chat_id
        keys: list[tuple[int | str, tuple[int, float]]] = [
            (chat, FLOOD_LIMITS["group" if chat < 0 else "private"]),
            ("bot", FLOOD_LIMITS["bot"]),
        ]
        wait = 0.0
        for key, (calls, seconds) in keys:
            arrivals = self._arrivals.setdefault(key, deque())
            while arrivals and arrivals[0] + seconds <= call.at:
                arrivals.popleft()
            if len(arrivals) >= calls:
                wait = max(wait, arrivals[0] + seconds - call.at)
        if wait > 0:
            return max(1, math.ceil(wait))
        for key, _ in keys:
            self._arrivals[key].append(call.at)
        return None

    # -- looking at what the bot did ----------------------------------------------------------

    def ok(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and c.status == 200 and (chat_id is None or c.chat_id == chat_id)
        ]

    def answers_to(self, query_id: str) -> list[Call]:
        return [
            c for c in self.ok("answerCallbackQuery") if c.params["callback_query_id"] == query_id
        ]

    def buttons(self, call: Call) -> list[tuple[str, str]]:
        """``(label, callback_data)`` of a send or edit; an edit without them removes them."""
        if "reply_markup" not in call.params:
            return []
        rows = call.value("reply_markup")["inline_keyboard"]
        return [(b["text"], b["callback_data"]) for row in rows for b in row]

    def replies_to(self, message_id: int) -> list[Call]:
        return [c for c in self.ok("sendMessage") if c.reply_to == message_id]

    def edits_of(self, chat_id: int, message_id: int) -> list[Call]:
        edits = self.ok("editMessageText", chat_id)
        return [c for c in edits if int(c.params["message_id"]) == message_id]

    def state(self, send: Call) -> Call:
        """What gave a message its text now: its last accepted edit, or its send."""
        assert send.message_id is not None
        edits = self.edits_of(send.chat_id, send.message_id)
        return edits[-1] if edits else send

    async def wait_for(self, found: Callable[[], T | None], timeout: float = 90.0) -> T:
        """Poll ``found`` until it returns something (the bot works in another process)."""
        deadline = time.monotonic() + timeout
        while (result := found()) is None or result == []:
            if time.monotonic() > deadline:
                sent = [c.text for c in self.calls if c.method.endswith(("Message", "Text"))]
                raise AssertionError(f"timed out; the bot sent: {sent}")
            await asyncio.sleep(0.05)
        return result

    # -- the API ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        form = await request.post()
        call = Call(method, {k: str(v) for k, v in form.items()}, time.monotonic())
        self.calls.append(call)
        if request.match_info["token"] != self.token:
            call.status = 401
            return _error(401, "Unauthorized")
        if self._limits[method] > 0 and self._spared[method] > 0:
            self._spared[method] -= 1
        elif self._limits[method] > 0:
            self._limits[method] -= 1
            retry = self._retry_after[method]
            call.status = 429
            return _error(
                429, f"Too Many Requests: retry after {retry}", parameters={"retry_after": retry}
            )
        if self._outages[method] > 0:
            self._outages[method] -= 1
            call.status = self._outage_status[method]
            return _error(call.status, "Bad Gateway")
        if self.enforce and method in PACED and (wait := self._over_limit(call)) is not None:
            self.refused += 1
            call.status = 429
            return _error(
                429, f"Too Many Requests: retry after {wait}", parameters={"retry_after": wait}
            )
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            return _error(404, "Not Found")
        try:
            result = await handler(call)
        except _ApiError as exc:
            call.status = exc.code
            return _error(exc.code, exc.description)
        return web.json_response({"ok": True, "result": result})

    async def _api_getMe(self, call: Call) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Mirror",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_getUpdates(self, call: Call) -> list[dict[str, Any]]:
        self._confirmed = max(self._confirmed, int(call.params.get("offset", "0")))
        offset = self._confirmed
        timeout = float(call.params.get("timeout", "0"))
        deadline = time.monotonic() + timeout
        while True:
            pending = [u for u in self._updates if u["update_id"] >= offset]
            left = deadline - time.monotonic()
            if pending or left <= 0 or self._closed:
                return pending
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), left)
            except TimeoutError:
                return []

    async def _api_sendMessage(self, call: Call) -> dict[str, Any]:
        chat_id = call.chat_id
        message_id = next(self._ids)
        call.message_id = message_id
        self._texts[(chat_id, message_id)] = call.text
        self._markups[(chat_id, message_id)] = call.params.get("reply_markup")
        return self._message(chat_id, message_id, call.text)

    async def _api_editMessageText(self, call: Call) -> dict[str, Any]:
        key = (call.chat_id, int(call.params["message_id"]))
        if key not in self._texts:
            raise _ApiError(400, "Bad Request: message to edit not found")
        # Telegram compares the text and the keyboard: a new keyboard alone is a change.
        if self._texts[key] == call.text and self._markups.get(key) == call.params.get(
            "reply_markup"
        ):
            raise _ApiError(400, NOT_MODIFIED)
        self._texts[key] = call.text
        self._markups[key] = call.params.get("reply_markup")
        return self._message(*key, call.text)

    async def _api_answerCallbackQuery(self, call: Call) -> bool:
        if not call.params.get("callback_query_id", "").startswith("cq"):
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired")
        return True

    async def _api_getFile(self, call: Call) -> dict[str, Any]:
        file_id = call.params.get("file_id", "")
        if file_id not in self._files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_size": len(self._files[file_id]),
            "file_path": f"documents/{file_id}.txt",
        }

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.removeprefix("documents/").removesuffix(".txt")
        if file_id not in self._files:
            return web.Response(status=404)
        self.downloads.append(path)
        return web.Response(body=self._files[file_id])

    async def _api_getChat(self, call: Call) -> dict[str, Any]:
        chat_id = call.chat_id
        if chat_id > 0 and chat_id not in self.started:
            raise _ApiError(400, "Bad Request: chat not found")
        chat = Chat(chat_id, "private" if chat_id > 0 else "supergroup", None)
        return {**chat.json(), "accent_color_id": 0, "max_reaction_count": 11}  # ChatFullInfo

    async def _api_setMyCommands(self, call: Call) -> bool:
        return True

    async def _api_deleteWebhook(self, call: Call) -> bool:
        return True

    async def _api_setWebhook(self, call: Call) -> bool:
        return True

    def _message(self, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        private = chat_id > 0
        chat = Chat(chat_id, "private" if private else "supergroup", None if private else "group")
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat.json(),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Mirror"},
            "text": text,
        }


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _error(code: int, description: str, **extra: Any) -> web.Response:
    body = {"ok": False, "error_code": code, "description": description, **extra}
    return web.json_response(body, status=code)
