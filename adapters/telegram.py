"""The Telegram adapter: python-telegram-bot (v22) inside our own asyncio loop.

Telegram turns into the chat port like this: a command message becomes an :class:`Incoming`
(closed by default: anybody can write to a bot), every answer is a reply to that message, the
live message is edited with ``editMessageText``, and views are Telegram HTML
(:mod:`adapters.telegram_html`). Updates are handled concurrently, so a long copy never
holds up another user's command.

Flood limits are handled in one place, ``bot``: each conversation tells its chat's budget
(:class:`bot.pacing.Pace`: 20 messages a minute in a group, one a second in a private chat,
30 a second for the bot), and ``bot.pacing`` sends every post and edit of a chat under it,
answers first. PTB's optional ``AIORateLimiter`` is not installed, so a 429 reaches us as
``RetryAfter`` and becomes :class:`RateLimited`, which ``bot.delivery`` waits out (a second
limiter would only stack its own waits on top, and would hide 429s from the code that knows
which edit can be dropped).

``TELEGRAM_API_URL`` replaces ``https://api.telegram.org`` (blocked where this bot is most
needed): a self-hosted Bot API server or a reverse proxy. Long polling by default; webhook
mode (PTB's tornado server) when ``TELEGRAM_WEBHOOK_URL`` is set, only with a secret token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from telegram import Bot as TelegramBot
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning
from tenacity import AsyncRetrying

from adapters import telegram_html
from adapters.telegram_html import Mention
from bot.chat import (
    ChatUnavailable,
    ConfigurationError,
    Conversation,
    Handler,
    Incoming,
    Press,
    RateLimited,
    Reply,
    SharedFile,
    Undeliverable,
)
from bot.commands import discover
from bot.delivery import deliver, reconnecting
from bot.i18n import CHINESE, ENGLISH, _, speaking
from bot.pacing import Budget, Pace
from bot.plugins import AdapterPlugin, AdapterSettings, SettingsPlugin
from bot.view import MessageView

log = logging.getLogger(__name__)

T = TypeVar("T")

PRIVATE_EDIT_INTERVAL = 1.0
GROUP_EDIT_INTERVAL = 3.0
PRIVATE_BUDGET = Budget(1, 1.0)
GROUP_BUDGET = Budget(20, 60.0)
BOT_BUDGET = Budget(30, 1.0)
"""Telegram's flood limits: per private chat, per group, and for all chats of the bot."""

MENUS = {None: ENGLISH, "zh": CHINESE}
"""The command menu per client language (``language_code``; None: every other client)."""


def menu(language: str) -> list[BotCommand]:
    """The commands menus show, each with its summary (and usage) in ``language``."""
    with speaking(language):
        return [
            BotCommand(entry.name, _menu_line(entry.summary, entry.usage))
            for entry in discover()
            if entry.menu
        ]


def _menu_line(summary: str, usage: str) -> str:
    """``An image's tags, newest first: /tags IMAGE [FILTER]``; the usage only when it says
    more than the command's name."""
    if " " not in usage:
        return _(summary)
    return _("{summary}: {usage}").format(summary=_(summary), usage=usage)


_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def keyboard(view: MessageView) -> InlineKeyboardMarkup | None:
    """One button a row; ``callback_data`` is only the stored action's id (at most 64 bytes).
    None removes the keyboard of an edited message (a finished job's Cancel)."""
    if not view.actions:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(a.label, callback_data=a.id)] for a in view.actions]
    )


def _rate_limited(exc: RetryAfter) -> RateLimited:
    with warnings.catch_warnings():  # v22 warns that the int form goes away; accept both
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return RateLimited(seconds)


async def _call(request: Callable[[], Awaitable[T]]) -> T:
    """One Bot API call, its failures as the port names them: a 429 is :class:`RateLimited`;
    network faults, timeouts and server errors (PTB's ``NetworkError``) are
    :class:`ChatUnavailable`; every other refusal (bot blocked or removed, chat gone, token
    revoked) is :class:`Undeliverable`, as no retry can change it."""
    try:
        return await request()
    except RetryAfter as exc:
        raise _rate_limited(exc) from None
    except BadRequest as exc:  # before NetworkError, which PTB makes its base class
        if "message is not modified" in exc.message.lower():
            raise  # the edit's own business: the text is already there
        raise Undeliverable(f"Telegram refused: {exc.message}", code=exc.message) from None
    except NetworkError as exc:
        raise ChatUnavailable(f"Telegram did not answer: {exc.message}") from None
    except TelegramError as exc:
        raise Undeliverable(f"Telegram refused: {exc.message}") from None


@dataclass(frozen=True)
class _Where:
    """A chat, the message being answered, and who sent it: all a reply needs to know."""

    chat_id: int
    request_id: int | None
    """The message answered; None for a message nobody asked for (an approval request)."""
    requester: Mention

    @property
    def is_group(self) -> bool:
        return self.chat_id < 0  # Telegram's group, supergroup and channel ids are negative


class TelegramReply:
    def __init__(self, bot: TelegramBot, where: _Where, message_id: int) -> None:
        self._bot = bot
        self._where = where
        self.message_id = message_id

    @property
    def ref(self) -> str:
        w = self._where
        request = w.request_id if w.request_id is not None else self.message_id
        return f"{w.chat_id}:{self.message_id}:{request}:{w.requester.user_id}"

    def can_become(self, view: MessageView) -> bool:
        """An edit is one message and notifies nobody: a view that needs two, or asks to
        notify (a long job's answer), is posted anew (:class:`bot.chat.Replaceable`)."""
        return not view.notify and len(telegram_html.pages(view, self._where.requester)) == 1

    async def edit(self, view: MessageView) -> None:
        text = telegram_html.single(view, self._where.requester)
        # "Message is not modified", the one BadRequest _call lets through: the text is already
        # there (an edit retried after a lost answer), so there is nothing to do.
        with contextlib.suppress(BadRequest):
            await _call(
                lambda: self._bot.edit_message_text(
                    text,
                    chat_id=self._where.chat_id,
                    message_id=self.message_id,
                    parse_mode=ParseMode.HTML,
                    link_preview_options=_NO_PREVIEW,
                    reply_markup=keyboard(view),
                )
            )


class TelegramConversation:
    def __init__(self, bot: TelegramBot, where: _Where) -> None:
        self._bot = bot
        self._where = where

    @property
    def edit_interval(self) -> float:
        return GROUP_EDIT_INTERVAL if self._where.is_group else PRIVATE_EDIT_INTERVAL

    @property
    def pace(self) -> Pace:
        budget = GROUP_BUDGET if self._where.is_group else PRIVATE_BUDGET
        return Pace(str(self._where.chat_id), budget, shared=BOT_BUDGET)

    # A chat, group or private, is one stream everyone in it reads: jobs asked there together
    # may share one live message (bot.chat.Gathering).

    @property
    def room(self) -> str:
        return str(self._where.chat_id)

    def share(self, reply: Reply) -> Reply:
        """The same message, as this request's handle: its ``ref`` names this request and
        requester, so after a restart this job's answer replies to its own request."""
        assert isinstance(reply, TelegramReply)
        return TelegramReply(self._bot, self._where, reply.message_id)

    def message_of(self, reply: Reply) -> str:
        assert isinstance(reply, TelegramReply)
        return str(reply.message_id)

    async def post(self, view: MessageView) -> Reply:
        """A reply to the command; a long answer continues in further messages.

        Only the first message may raise :class:`RateLimited` (the caller retries the post);
        the rest are delivered here, so a retry never sends the beginning twice.
        """
        *pages, last = telegram_html.pages(view, self._where.requester)
        markup = keyboard(view)  # under the last page, where the reader ends up
        if not pages:
            first = await _call(partial(self._send, last, markup))
        else:
            first = await _call(partial(self._send, pages[0]))
            for page in pages[1:]:
                await deliver(partial(_call, partial(self._send, page)), what="continued answer")
            send_last = partial(_call, partial(self._send, last, markup))
            await deliver(send_last, what="continued answer")
        return TelegramReply(self._bot, self._where, first.message_id)

    async def _send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        return await self._bot.send_message(
            self._where.chat_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=_NO_PREVIEW,
            reply_parameters=(
                ReplyParameters(self._where.request_id, allow_sending_without_reply=True)
                if self._where.request_id is not None
                else None
            ),
            reply_markup=markup,
        )


def _reconnecting(api_url: str) -> AsyncRetrying:
    """Start-up retries: any Bot API error but a rejected token may pass."""
    return reconnecting(
        lambda exc: isinstance(exc, TelegramError) and not isinstance(exc, InvalidToken),
        f"telegram: the Bot API at {api_url}",
    )


class TelegramSettings(AdapterSettings, env_prefix="TELEGRAM_"):
    """``TELEGRAM_*``: the adapter runs when ``TELEGRAM_BOT_TOKEN`` is set."""

    bot_token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    """A self-hosted Bot API server or a reverse proxy where api.telegram.org is blocked."""
    webhook_url: str | None = None
    """Webhook mode (only with a secret) instead of long polling."""
    webhook_secret: SecretStr | None = None
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_listen: str = "0.0.0.0"

    @property
    def configured(self) -> bool:
        return self.bot_token is not None

    def build(self) -> TelegramAdapter:
        return TelegramAdapter.from_settings(self)

    async def check(self) -> str:
        return await self.build().check()


plugin: AdapterPlugin = SettingsPlugin(TelegramSettings)
"""The ``hub_mirror_bot.adapters`` entry point."""


def _is_ours(text: str, username: str | None) -> bool:
    """In a group: one of our commands (:mod:`bot.commands`), bare or addressed to us
    (``/mirror@OurBot``); anything else there may belong to another bot."""
    head = text.split(maxsplit=1)[0].removeprefix("/") if text.strip() else ""
    name, _, addressee = head.partition("@")
    if addressee:
        return username is not None and addressee.lower() == username.lower()
    return name.lower() in discover().words()


class TelegramAdapter:
    name = "telegram"

    def __init__(
        self,
        token: str,
        *,
        api_url: str = "https://api.telegram.org",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_listen: str = "0.0.0.0",
        webhook_port: int = 8443,
    ) -> None:
        if webhook_url and not webhook_secret:
            raise ConfigurationError(
                "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not: set a secret "
                "so that only Telegram can post updates to the bot."
            )
        if webhook_url and not _SECRET.fullmatch(webhook_secret or ""):
            raise ConfigurationError(
                "TELEGRAM_WEBHOOK_SECRET must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -."
            )
        root = api_url.rstrip("/")
        self._api_url = root
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._webhook_listen = webhook_listen
        self._webhook_port = webhook_port
        self._handler: Handler | None = None
        self._reconnecting = _reconnecting(root)
        self._app: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(token)
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            .concurrent_updates(True)
            .build()
        )
        self._app.add_handler(
            MessageHandler(
                filters.UpdateType.MESSAGE & (filters.TEXT | filters.Document.ALL),
                self._on_message,
            )
        )
        self._app.add_handler(CallbackQueryHandler(self._on_button))
        self._app.add_error_handler(self._on_error)
        # httpx logs every request at INFO, long polls included: noise, and URLs hold the token.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    @classmethod
    def from_settings(cls, settings: TelegramSettings) -> TelegramAdapter:
        if settings.bot_token is None:
            raise ConfigurationError("TELEGRAM_BOT_TOKEN is not set.")
        secret = settings.webhook_secret
        return cls(
            settings.bot_token.get_secret_value(),
            api_url=settings.api_url,
            webhook_url=settings.webhook_url,
            webhook_secret=secret.get_secret_value() if secret else None,
            webhook_listen=settings.webhook_listen,
            webhook_port=settings.webhook_port,
        )

    # -- the port -----------------------------------------------------------------------------

    async def serve(self, handler: Handler) -> None:
        """Receive updates until cancelled; each command is handed to ``handler``."""
        self._handler = handler
        await self._initialize()
        async with self._app:
            await self._register_commands()
            await self._app.start()
            updater = self._app.updater
            assert updater is not None
            try:
                if self._webhook_url:
                    await updater.start_webhook(
                        listen=self._webhook_listen,
                        port=self._webhook_port,
                        url_path=urlsplit(self._webhook_url).path,
                        webhook_url=self._webhook_url,
                        secret_token=self._webhook_secret,
                        bootstrap_retries=-1,
                    )
                    log.info("telegram: webhook on port %d", self._webhook_port)
                else:
                    await updater.start_polling(bootstrap_retries=-1)
                    log.info("telegram: polling %s", self._api_url)
                await asyncio.Event().wait()  # until cancelled
            finally:
                if updater.running:
                    await updater.stop()
                if self._app.running:
                    await self._app.stop()

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        """The live message of a job that outlived a restart (``chat:message:request:user``)."""
        try:
            chat_id, message_id, request_id, user_id = (int(part) for part in ref.split(":"))
        except ValueError:
            return None
        where = _Where(chat_id, request_id, Mention(user_id))
        return TelegramConversation(self._app.bot, where), TelegramReply(
            self._app.bot, where, message_id
        )

    # -- posting where nobody asked (bot.chat.Addressable) ------------------------------------

    async def open_chat(self, chat_id: str) -> Conversation:
        """A group or a private chat by its id; the first post says whether the bot is in it
        (:class:`Undeliverable` otherwise: "chat not found", "bot was kicked")."""
        try:
            chat = int(chat_id)
        except ValueError:
            raise Undeliverable(f"`{chat_id}` is not a Telegram chat id") from None
        return TelegramConversation(self._app.bot, _Where(chat, None, Mention(chat)))

    async def open_private(self, user_id: str) -> Conversation:
        """A person's private chat with the bot, whose id is theirs. Telegram lets a bot write
        only to someone who started it: asked with ``getChat`` first, so a person who never did
        is :class:`Undeliverable` here, not a failed post later."""
        try:
            person = int(user_id)
        except ValueError:
            raise Undeliverable(f"`{user_id}` is not a Telegram user id") from None
        await _call(partial(self._app.bot.get_chat, person))
        return TelegramConversation(self._app.bot, _Where(person, None, Mention(person)))

    # -- start-up -----------------------------------------------------------------------------

    async def check(self) -> str:
        """``getMe`` once, for ``mirror-bot check``: the bot's name, or one sentence why not."""
        bot = self._app.bot
        try:
            async with bot:  # initialize() is getMe
                me = bot.bot
        except InvalidToken:
            raise ConfigurationError(
                f"The Bot API server at {self._api_url} rejected TELEGRAM_BOT_TOKEN; check "
                "the token from @BotFather."
            ) from None
        except TelegramError as exc:
            raise ConfigurationError(
                f"The Bot API server at {self._api_url} did not answer getMe ({exc.message}); "
                "check TELEGRAM_API_URL and HTTPS_PROXY."
            ) from None
        mode = "webhook" if self._webhook_url else "long polling"
        return f"bot @{me.username} ({mode})"

    async def _initialize(self) -> None:
        """``getMe`` until it answers: the Bot API may be unreachable for a while."""
        try:
            await self._reconnecting.copy()(self._app.initialize)
        except InvalidToken:
            raise ConfigurationError(
                f"The Bot API server at {self._api_url} rejected TELEGRAM_BOT_TOKEN; check "
                "the token from @BotFather and TELEGRAM_API_URL."
            ) from None

    async def _register_commands(self) -> None:
        """The command menu, in English and for Chinese clients; a failure is not fatal."""
        for code, language in MENUS.items():
            try:
                await self._app.bot.set_my_commands(menu(language), language_code=code)
            except TelegramError as exc:
                log.warning("telegram: could not set the command menu (%s)", type(exc).__name__)

    # -- updates ------------------------------------------------------------------------------

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command, or a document with ``/mirror`` as its caption (anything in a private
        chat), whose text is read as if pasted after the command."""
        message, user, chat = update.message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None:
            return
        text = message.text if message.text is not None else message.caption or ""
        document = message.document if message.text is None else None
        if message.text is None and document is None:
            return
        is_group = chat.type != ChatType.PRIVATE
        username = self._app.bot.username
        if is_group and not (text.startswith("/") and _is_ours(text, username)):
            return  # group chatter, or another bot's command
        if self._handler is None:
            return
        shared = None
        if document is not None:
            file_id = document.file_id
            shared = SharedFile(
                document.file_name or "the file",
                document.file_size,
                lambda: _call(lambda: self._download(file_id)),
            )
        incoming = Incoming(
            platform="telegram",
            user_id=str(user.id),
            user_name=user.full_name,
            chat_id=str(chat.id),
            text=text,
            is_group=is_group,
            bot_username=username,
            closed_by_default=True,
            file=shared,
            language=user.language_code,
        )
        where = _Where(chat.id, message.message_id, Mention(user.id, user.first_name))
        await self._handler(incoming, TelegramConversation(self._app.bot, where))

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button under one of our messages: answered with ``answerCallbackQuery`` always
        (the client shows a spinner until then), with text when the bot refuses privately."""
        query, user = update.callback_query, update.effective_user
        message = query.message if query is not None else None
        if query is None or user is None or message is None or self._handler is None:
            return
        answered = False

        async def answer_privately(text: str) -> None:
            nonlocal answered
            answered = True
            await _call(partial(query.answer, text, show_alert=True))

        chat = message.chat
        incoming = Incoming(
            platform="telegram",
            user_id=str(user.id),
            user_name=user.full_name,
            chat_id=str(chat.id),
            text="",
            is_group=chat.type != ChatType.PRIVATE,
            bot_username=self._app.bot.username,
            closed_by_default=True,
            press=Press(query.data or "", answer_privately),
            language=user.language_code,
        )
        # Answers to a press reply to the message that carried the button.
        where = _Where(chat.id, message.message_id, Mention(user.id, user.first_name))
        try:
            await self._handler(incoming, TelegramConversation(self._app.bot, where))
        finally:
            if not answered:
                with contextlib.suppress(TelegramError):
                    await query.answer()

    async def _download(self, file_id: str) -> bytes:
        """``getFile``, then the file from the Bot API's file path."""
        found = await self._app.bot.get_file(file_id)
        return bytes(await found.download_as_bytearray())

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One line, no traceback: the bot's own errors were already answered in the chat."""
        error = context.error
        log.error("telegram: an update failed: %s", type(error).__name__)
        log.debug("telegram: update failure details", exc_info=error)
