"""The Slack adapter: ``/mirror`` slash commands, ``@bot mirror`` mentions and DMs.

Built on slack-bolt's async app. Socket Mode when ``SLACK_APP_TOKEN`` is set (no public URL,
the usual choice behind a firewall), else HTTP mode: Slack's signed requests at
``/slack/events`` on ``SLACK_PORT``. Every request is acknowledged at once; the command then
runs in a task of its own, so Slack never waits for a registry.

Threading: a slash command has no thread, so its first answer is posted in the channel and
everything after it goes into that message's thread; a mention is answered in its thread (or
starts one); a DM is answered in the DM. The live message is one message edited with
``chat.update``.

Rate limits: each conversation tells its channel's budget (:class:`bot.pacing.Pace`, about
one message a second), and ``bot.pacing`` sends every post and edit in a channel under it,
answers first. Retries have one owner, ``bot.delivery``: the Web API client has no retry
handlers of its own; a 429 is raised as :class:`bot.chat.RateLimited` (so an edit retried
later sends the *newest* view instead of replaying a stale one), a 5xx, ``internal_error``
or an unreachable API as :class:`bot.chat.ChatUnavailable`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientError, web
from pydantic import Field, SecretStr
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack_text import ACTION_PREFIX, command_text, slash_text, to_blocks, to_mrkdwn
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
from bot.delivery import reconnecting
from bot.files import MAX_FILE_BYTES
from bot.i18n import N_, _
from bot.pacing import Budget, Pace
from bot.plugins import AdapterPlugin, AdapterSettings, SettingsPlugin
from bot.redelivery import Seen
from bot.view import MessageView
from mirror.tasks import TaskSet

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
EDIT_INTERVAL = 1.5
"""Slack allows about one ``chat.update`` per second per message; leave some room."""
CHANNEL_BUDGET = Budget(1, 1.0)
"""Slack: about one message a second per channel, short bursts tolerated."""
_FATAL_AUTH = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})
_NOT_MEMBER = frozenset({"not_in_channel", "channel_not_found"})
MOVED_TO_DM = N_(
    "I cannot post in this channel, so I answer in our direct messages. "
    "Invite me (/invite @hub-mirror) to get answers here."
)


class _QuietTokenWarning(logging.Filter):
    """Bolt warns that ``SLACK_BOT_TOKEN`` from the environment is unused when it is given a
    client; the client carries that very token (and the API root), so the warning misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class SlackSettings(AdapterSettings, env_prefix="SLACK_"):
    """``SLACK_*``: the adapter runs when ``SLACK_BOT_TOKEN`` is set."""

    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    """Socket Mode (no public URL); without it, HTTP mode with the signing secret."""
    signing_secret: SecretStr | None = None
    port: int = Field(default=3000, ge=1, le=65535)
    """HTTP mode listens here, at ``/slack/events``."""
    api_url: str = "https://slack.com/api/"

    @property
    def configured(self) -> bool:
        return self.bot_token is not None

    def build(self) -> SlackAdapter:
        return SlackAdapter.from_settings(self)

    async def check(self) -> str:
        return await self.build().check()


plugin: AdapterPlugin = SettingsPlugin(SlackSettings)
"""The ``hub_mirror_bot.adapters`` entry point."""


# -- the chat port -----------------------------------------------------------------------------


# Slack answers these with ok=false, but a later try may work; every other error is for good.
_TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)


def _port_error(exc: Exception) -> Exception:
    """A Web API failure as the port sees it: RateLimited, ChatUnavailable or Undeliverable;
    anything else (a bug) as it is."""
    if isinstance(exc, TimeoutError | OSError | ClientError):
        return ChatUnavailable(f"Slack did not answer ({type(exc).__name__})")
    if not isinstance(exc, SlackApiError):
        return exc
    if exc.response.status_code == 429:
        try:
            retry_after = float(exc.response.headers.get("Retry-After", "1"))
        except (TypeError, ValueError):
            retry_after = 1.0
        return RateLimited(retry_after)
    error = str(exc.response.get("error", "")) if exc.response.status_code < 500 else ""
    if error and error not in _TRANSIENT_ERRORS:
        return Undeliverable(f"Slack refused: {error}", code=error)
    return ChatUnavailable(f"Slack did not answer ({error or exc.response.status_code})")


_FAILURES = (SlackApiError, TimeoutError, OSError, ClientError)
LOCALE_TIMEOUT = 3.0
"""Seconds a command waits for its sender's locale before answering in the default."""


@dataclass
class _Api:
    """The Web API calls the port needs, their failures in the port's terms."""

    client: AsyncWebClient

    async def post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]]
    ) -> str:
        try:
            response = await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=text,
                blocks=blocks or None,
                mrkdwn=True,
                parse="none",
                link_names=False,
                unfurl_links=False,
                unfurl_media=False,
            )
        except _FAILURES as exc:
            raise _port_error(exc) from None
        return str(response["ts"])

    async def open_dm(self, user: str) -> str:
        try:
            response = await self.client.conversations_open(users=user)
        except _FAILURES as exc:
            raise _port_error(exc) from None
        return str(response["channel"]["id"])

    async def ephemeral(self, response_url: str, text: str) -> None:
        """A note only the requester sees, through the slash command's ``response_url``."""
        webhook = AsyncWebhookClient(response_url, proxy=self.client.proxy)
        try:
            await webhook.send(text=text, response_type="ephemeral")
        except Exception as exc:  # a courtesy: the answer itself goes to the DM regardless
            log.warning("could not reach the slash command's response_url (%s)", type(exc).__name__)

    async def download(self, url: str) -> bytes:
        """A shared file's ``url_private``, with the bot token (Slack's own file host, or the
        API's host when it is a stand-in: the token goes nowhere else)."""
        host = urlsplit(url).hostname
        if host not in ("files.slack.com", urlsplit(self.client.base_url).hostname):
            raise Undeliverable(f"a file outside Slack ({host})")
        headers = {"Authorization": f"Bearer {self.client.token}"}
        try:
            async with (
                aiohttp.ClientSession(trust_env=True, timeout=_DOWNLOAD_TIMEOUT) as session,
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                if response.status >= 500:
                    raise ChatUnavailable(f"Slack answered {response.status} for a file")
                if response.status != 200:
                    raise Undeliverable(f"Slack refused a file ({response.status})")
                return await response.content.read(MAX_FILE_BYTES + 1)
        except (ClientError, TimeoutError) as exc:
            raise ChatUnavailable(f"Slack did not send a file: {type(exc).__name__}") from None

    async def edit(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """``blocks`` empty removes the buttons the message had (Slack keeps them otherwise)."""
        try:
            await self.client.chat_update(
                channel=channel, ts=ts, text=text, blocks=blocks, parse="none", link_names=False
            )
        except _FAILURES as exc:
            raise _port_error(exc) from None

    async def locale(self, user: str) -> str | None:
        """The user's Slack language (``users.info`` with ``include_locale``: ``zh-CN``), or
        None when Slack does not say or cannot be asked (answers then follow the default)."""
        try:
            async with asyncio.timeout(LOCALE_TIMEOUT):
                response = await self.client.users_info(user=user, include_locale=True)
        except _FAILURES as exc:
            log.info("slack: no locale for %s (%s)", user, type(exc).__name__)
            return None
        found = (response.get("user") or {}).get("locale")
        return str(found) if found else None

    async def whisper(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        """A message only ``user`` sees (``chat.postEphemeral``): a refused button press."""
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, text=text
            )
        except _FAILURES as exc:
            raise _port_error(exc) from None


@dataclass
class SlackReply:
    api: _Api
    channel: str
    thread_ts: str | None
    ts: str
    requester: str | None

    @property
    def ref(self) -> str:
        """``channel:thread_ts:ts:requester``, enough to edit and thread after a restart."""
        return ":".join((self.channel, self.thread_ts or "", self.ts, self.requester or ""))

    async def edit(self, view: MessageView) -> None:
        blocks = to_blocks(view, self.requester)
        await self.api.edit(self.channel, self.ts, to_mrkdwn(view, self.requester), blocks)


@dataclass
class SlackConversation:
    """One request's thread. ``open_thread``: the first post starts it (slash commands).

    A slash command works in channels the bot cannot post to (a private channel it was not
    invited to, a DM between two people); with ``response_url`` set, the conversation then
    moves to the requester's DM with the bot and says so in a note only they see.
    """

    api: _Api
    channel: str
    thread_ts: str | None
    requester: str | None
    open_thread: bool = False
    response_url: str | None = None

    @property
    def edit_interval(self) -> float:
        return EDIT_INTERVAL

    @property
    def pace(self) -> Pace:
        return Pace(self.channel, CHANNEL_BUDGET)

    async def post(self, view: MessageView) -> Reply:
        text = to_mrkdwn(view, self.requester)
        blocks = to_blocks(view, self.requester)
        try:
            ts = await self.api.post(self.channel, self.thread_ts, text, blocks)
        except Undeliverable as exc:
            if not (self.response_url and self.requester) or exc.code not in _NOT_MEMBER:
                raise
            await self._move_to_dm(self.requester, self.response_url)
            ts = await self.api.post(self.channel, self.thread_ts, text, blocks)
        if self.thread_ts is None and self.open_thread:
            self.thread_ts = ts
        return SlackReply(self.api, self.channel, self.thread_ts, ts, self.requester)

    async def _move_to_dm(self, requester: str, response_url: str) -> None:
        self.channel = await self.api.open_dm(requester)
        self.thread_ts, self.open_thread, self.response_url = None, False, None
        await self.api.ephemeral(response_url, _(MOVED_TO_DM))  # in the asker's language


def parse_ref(ref: str) -> tuple[str, str | None, str, str | None] | None:
    parts = ref.split(":")
    if len(parts) != 4 or not parts[0] or not parts[2]:
        return None
    channel, thread_ts, ts, requester = parts
    return channel, thread_ts or None, ts, requester or None


# -- the adapter -------------------------------------------------------------------------------


def _may_pass(exc: BaseException) -> bool:
    """At start-up: Slack unreachable or in trouble, not a token it refuses."""
    if isinstance(exc, SlackApiError):
        return exc.response.get("error") not in _FATAL_AUTH
    return isinstance(exc, TimeoutError | OSError | ClientError)


_RECONNECTING = reconnecting(_may_pass, "Slack")
"""Start-up retries: ``auth.test`` until Slack answers, unless it refuses the token."""


_DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=60)


def _api_root(url: str) -> str:
    """slack_sdk joins ROOT + method with urljoin, which drops a last segment without ``/``."""
    return url if url.endswith("/") else url + "/"


class SlackAdapter:
    name = "slack"

    def __init__(
        self,
        *,
        bot_token: str,
        app_token: str | None = None,
        signing_secret: str | None = None,
        port: int = 3000,
        api_url: str = "https://slack.com/api/",
        host: str = "0.0.0.0",
    ) -> None:
        if not app_token and not signing_secret:
            raise ConfigurationError(
                "Set SLACK_APP_TOKEN for Socket Mode or SLACK_SIGNING_SECRET for HTTP mode."
            )
        self._app_token = app_token
        self._signing_secret = signing_secret
        self._port = port
        self._host = host
        # No retry handlers: bot.delivery retries chat calls, _who_am_i the start-up.
        client = AsyncWebClient(token=bot_token, base_url=_api_root(api_url), retry_handlers=[])
        self._api = _Api(client)
        self._locales: dict[str, str | None] = {}
        """Each user's locale, asked once per run (a failure is remembered as None too)."""
        self._commands = TaskSet("slack")
        self._seen = Seen(512)
        self.bot_user_id: str | None = None

    @classmethod
    def from_settings(cls, settings: SlackSettings) -> SlackAdapter:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        token = secret(settings.bot_token)
        if not token:
            raise ConfigurationError("SLACK_BOT_TOKEN is not set.")
        return cls(
            bot_token=token,
            app_token=secret(settings.app_token),
            signing_secret=secret(settings.signing_secret),
            port=settings.port,
            api_url=settings.api_url,
        )

    @property
    def mode(self) -> str:
        return "socket" if self._app_token else "http"

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, handler: Handler) -> None:
        await self._who_am_i()
        app = self._build_app(handler)
        try:
            if self._app_token:
                await self._serve_socket_mode(app, self._app_token)
            else:
                await self._serve_http(app)
        finally:
            await self._commands.aclose()

    async def check(self) -> str:
        """``auth.test`` once, for ``mirror-bot check``: who the token is, or why not."""
        try:
            response = await self._api.client.auth_test()
        except SlackApiError as exc:
            raise ConfigurationError(
                f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')}); check the bot token."
            ) from None
        except (TimeoutError, OSError, ClientError) as exc:
            raise ConfigurationError(
                f"Slack's Web API at {self._api.client.base_url} did not answer "
                f"({type(exc).__name__}); check SLACK_API_URL and HTTPS_PROXY."
            ) from None
        return f"bot {response.get('user')} in workspace {response.get('team')} ({self.mode} mode)"

    async def _who_am_i(self) -> None:
        """``auth.test``: the bot's user id (to strip its mentions), and a bad token fails fast."""
        try:
            response: AsyncSlackResponse = await _RECONNECTING.copy()(self._api.client.auth_test)
        except SlackApiError as exc:
            raise ConfigurationError(
                f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')}); check the bot token."
            ) from None
        self.bot_user_id = str(response.get("user_id") or "") or None
        log.info("connected to Slack as %s (%s mode)", response.get("user"), self.mode)

    async def _serve_socket_mode(self, app: AsyncApp, app_token: str) -> None:
        client = self._api.client
        socket = AsyncSocketModeHandler(app, app_token, web_client=client, proxy=client.proxy)
        await socket.connect_async()  # type: ignore[no-untyped-call]
        try:
            await asyncio.Event().wait()
        finally:
            await socket.close_async()  # type: ignore[no-untyped-call]

    async def _serve_http(self, app: AsyncApp) -> None:
        server = AsyncSlackAppServer(port=self._port, path=EVENTS_PATH, app=app, host=self._host)
        runner = web.AppRunner(server.web_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
            log.info("serving Slack requests on port %d at %s", self._port, EVENTS_PATH)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    def _build_app(self, handler: Handler) -> AsyncApp:
        """Bolt's app: each listener acknowledges at once (Slack waits 3 s at most), turns the
        payload into the port's terms and runs the command in a task of its own."""
        bolt_logger = logging.getLogger("slack_bolt")
        bolt_logger.addFilter(_QuietTokenWarning())
        app = AsyncApp(
            client=self._api.client,
            signing_secret=self._signing_secret or "",
            request_verification_enabled=not self._app_token,
            logger=bolt_logger,
        )

        def run(incoming: Incoming, conversation: SlackConversation) -> None:
            self._spawn(self._in_language(handler, incoming, conversation))

        async def on_command(ack: Callable[[], Awaitable[None]], command: dict[str, Any]) -> None:
            await ack()
            run(*self._slash_command(command))

        async def on_mention(body: dict[str, Any], event: dict[str, Any]) -> None:
            if not self._seen.first_time(body.get("event_id")) or event.get("bot_id"):
                return
            run(*self._message(event, str(event.get("thread_ts") or event["ts"])))

        async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
            subtype = event.get("subtype")
            if event.get("channel_type") != "im" or event.get("bot_id"):
                return
            if subtype and not (subtype == "file_share" and event.get("files")):
                return
            if not self._seen.first_time(body.get("event_id")):
                return
            thread = event.get("thread_ts")
            run(*self._message(event, str(thread) if thread else None))

        async def on_button(ack: Callable[[], Awaitable[None]], body: dict[str, Any]) -> None:
            await ack()
            if (pressed := self._pressed(body)) is not None:
                run(*pressed)

        app.command(re.compile(r"^/.+"))(on_command)
        app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))(on_button)
        app.event("app_mention")(on_mention)
        app.event("message")(on_message)
        return app

    def _slash_command(self, command: dict[str, Any]) -> tuple[Incoming, SlackConversation]:
        """``/mirror ...``: answered in the channel, in a thread its first answer opens."""
        text = slash_text(str(command.get("command", "")), command_text(command["text"] or ""))
        channel = str(command["channel_id"])
        user = str(command["user_id"])
        incoming = self._incoming(user, str(command.get("user_name") or user), channel, text)
        conversation = SlackConversation(
            self._api,
            channel,
            None,
            user,
            open_thread=True,
            response_url=command.get("response_url") or None,
        )
        return incoming, conversation

    def _message(
        self, event: dict[str, Any], thread_ts: str | None
    ) -> tuple[Incoming, SlackConversation]:
        """A mention or a DM (with the file it shares), answered in ``thread_ts``."""
        user, channel = str(event.get("user", "")), str(event["channel"])
        text = command_text(str(event.get("text") or ""), self.bot_user_id)
        incoming = self._incoming(user, user, channel, text, self._shared(event))
        return incoming, SlackConversation(self._api, channel, thread_ts, user)

    def _pressed(self, body: dict[str, Any]) -> tuple[Incoming, SlackConversation] | None:
        """A button of ours pressed; answered in the thread of the message that carried it."""
        user = str(body.get("user", {}).get("id", ""))
        channel = str(body.get("channel", {}).get("id", ""))
        message = body.get("message") or {}
        actions = body.get("actions") or [{}]
        if not user or not channel or not message.get("ts"):
            return None
        thread = str(message.get("thread_ts") or message["ts"])

        async def answer_privately(text: str) -> None:
            await self._api.whisper(channel, user, thread, text)

        incoming = Incoming(
            platform="slack",
            user_id=user,
            user_name=str(body.get("user", {}).get("username") or user),
            chat_id=channel,
            text="",
            is_group=not channel.startswith("D"),
            press=Press(str(actions[0].get("value") or ""), answer_privately),
        )
        return incoming, SlackConversation(self._api, channel, thread, user)

    async def _in_language(
        self, handler: Handler, incoming: Incoming, conversation: Conversation
    ) -> None:
        """Hand the command over with its sender's locale, asked after the ack (Slack wants
        that within 3 s) and once per user."""
        if incoming.user_id not in self._locales:
            self._locales[incoming.user_id] = await self._api.locale(incoming.user_id)
        language = self._locales[incoming.user_id]
        await handler(dataclasses.replace(incoming, language=language), conversation)

    def _shared(self, event: dict[str, Any]) -> SharedFile | None:
        """The first file shared with the message, downloaded only when the bot asks."""
        files = [f for f in event.get("files") or () if isinstance(f, dict)]
        if not files:
            return None
        found = files[0]
        url = str(found.get("url_private_download") or found.get("url_private") or "")
        size = found.get("size")
        return SharedFile(
            str(found.get("name") or "the file"),
            size if isinstance(size, int) else None,
            lambda: self._api.download(url),
        )

    @staticmethod
    def _incoming(
        user: str, user_name: str, channel: str, text: str, file: SharedFile | None = None
    ) -> Incoming:
        return Incoming(
            platform="slack",
            user_id=user,
            user_name=user_name,
            chat_id=channel,
            text=text,
            is_group=not channel.startswith("D"),
            file=file,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a command after its ack, kept referenced so it is neither lost nor orphaned."""
        self._commands.spawn(work, name="slack-command")

    # -- posting where nobody asked (bot.chat.Addressable) ----------------------------------

    async def open_chat(self, chat_id: str) -> Conversation:
        """A channel by id (``C…``, ``G…``): messages go to the channel itself; one the bot is
        not a member of refuses the post (:class:`Undeliverable`, ``not_in_channel``)."""
        return SlackConversation(self._api, chat_id, None, None)

    async def open_private(self, user_id: str) -> Conversation:
        """The bot's direct messages with ``U…`` (``conversations.open``)."""
        channel = await self._api.open_dm(user_id)
        return SlackConversation(self._api, channel, None, user_id)

    # -- restart recovery ------------------------------------------------------------------

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        parsed = parse_ref(ref)
        if parsed is None:
            return None
        channel, thread_ts, ts, requester = parsed
        conversation = SlackConversation(self._api, channel, thread_ts, requester)
        return conversation, SlackReply(self._api, channel, thread_ts, ts, requester)
