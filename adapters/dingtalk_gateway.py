"""DingTalk's stream mode: dingtalk-stream's WebSocket client, in a thread of its own.

The SDK opens a connection with an HTTP call to the gateway (``/v1.0/gateway/connections/open``,
which hands out a WebSocket endpoint and a ticket), then reads JSON frames, routes each to
the handler of its topic and acknowledges it. That part is kept as it is. Its traps, found by
reading it (0.24), and what this module does about each:

- ``DingTalkStreamClient.start()`` runs on the caller's loop but calls ``open_connection``,
  blocking ``requests`` without a timeout, from it; it catches ``CancelledError`` (logs, sleeps
  ten seconds, reconnects) and never returns. So the client gets a loop in a thread of its own
  (a stalled gateway stalls only that thread), and :meth:`StreamGateway.stop` cancels it until
  it really ends: a second cancellation arrives inside its ``except`` and escapes.
- The gateway's address comes from ``DINGTALK_OPENAPI_ENDPOINT``, read once when the SDK is
  imported. ``open_connection`` is replaced (:class:`_Client`): against ``DINGTALK_API_URL``,
  with a timeout, and without logging the connection ticket, which the SDK does at INFO.
- It logs ``logger.exception('unknown exception', e)``: an argument without a placeholder,
  which the logging module turns into an error of its own; under our secret-redacting handler,
  which formats every record, that error would escape into ``start()`` and end the client for
  good. The SDK's records go through :class:`_SdkLog`, which folds such arguments into the
  message and keeps tracebacks out (the SDK retries by itself).
- It answers the gateway's ``ping`` frames, then warns of each as an "unknown message
  topic": those warnings are dropped.
- It creates a ``keepalive`` and a routing task per frame and never awaits them: they are
  cancelled with the thread's loop.

Frames are handed to the bot's loop with ``call_soon_threadsafe`` and acknowledged at once;
answers go out through the Open API (``adapters.dingtalk``), never through the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from dingtalk_stream import AckMessage, CallbackHandler, CallbackMessage, Credential
from dingtalk_stream import DingTalkStreamClient as _SdkClient
from dingtalk_stream.version import VERSION_STRING

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
OPEN_TIMEOUT = 10.0
"""Seconds the gateway has to hand out a connection (the SDK would wait forever)."""
STOP_TIMEOUT = 15.0
"""Seconds :meth:`StreamGateway.stop` waits for the thread; a connection attempt under way
(``OPEN_TIMEOUT``) may hold it that long. After that the daemon thread is left to the exit."""

OnFrame = Callable[[str, dict[str, Any], int | None], None]
"""``(topic, data, sent_at_ms)``, called on the bot's loop for every callback frame."""


class _Thread(threading.Thread):
    """A gateway's thread, which knows when it is being stopped."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(target=target, name="dingtalk-stream", daemon=True)
        self.stopping = threading.Event()


class _SdkLog(logging.Filter):
    """The SDK's log records made safe (see the module's docstring); none from a gateway being
    stopped, which reports its own cancellation as a network error."""

    def filter(self, record: logging.LogRecord) -> bool:
        thread = threading.current_thread()
        if isinstance(thread, _Thread) and thread.stopping.is_set():
            return False
        if str(record.msg).startswith("unknown message topic") and _topic(record) == "ping":
            return False  # the gateway's keepalive, which the SDK answers and then warns of
        try:
            record.getMessage()
        except (TypeError, ValueError):
            record.msg, record.args = f"{record.msg}: {record.args!r}", None
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def _topic(record: logging.LogRecord) -> object:
    return record.args[0] if isinstance(record.args, tuple) and record.args else None


SDK_LOG = logging.getLogger(f"{__name__}.sdk")
"""The SDK's own lines: warnings and errors only (at INFO it logs the connection's ticket)."""
SDK_LOG.setLevel(logging.WARNING)
SDK_LOG.addFilter(_SdkLog())


class _Client(_SdkClient):  # type: ignore[misc]
    """The SDK's client, opening its connection against our API base, with a timeout."""

    def __init__(self, credential: Credential, api_url: str, stopping: threading.Event) -> None:
        super().__init__(credential, logger=SDK_LOG)
        self._api_url = api_url.rstrip("/")
        self._stopping = stopping

    def open_connection(self) -> dict[str, Any] | None:
        """What the SDK's ``open_connection`` does, without its three traps; ``None`` (the SDK
        then waits ten seconds and tries again) when the gateway does not answer."""
        if self._stopping.is_set():
            return None
        topics: list[dict[str, str]] = [
            {"type": "CALLBACK", "topic": topic} for topic in self.callback_handler_map
        ]
        body = {
            "clientId": self.credential.client_id,
            "clientSecret": self.credential.client_secret,
            "subscriptions": topics,
            "ua": f"hub-mirror-bot dingtalk-sdk-python/v{VERSION_STRING}",
            "localIp": "",
        }
        headers = {
            "Accept": "application/json",
            "User-Agent": f"DingTalkStream/1.0 SDK/{VERSION_STRING} "
            f"Python/{platform.python_version()} (hub-mirror-bot)",
        }
        try:
            response = requests.post(
                self._api_url + OPEN_PATH, json=body, headers=headers, timeout=OPEN_TIMEOUT
            )
            response.raise_for_status()
            connection = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning(
                "DingTalk's stream gateway did not open a connection (%s); retrying in 10s",
                _reason(exc),
            )
            return None
        if not isinstance(connection, dict) or not connection.get("endpoint"):
            log.warning("DingTalk's stream gateway answered without an endpoint; retrying in 10s")
            return None
        log.info("connected to DingTalk's stream gateway")
        return connection


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


class _Forward(CallbackHandler):  # type: ignore[misc]
    """Every frame of one topic, to the bot's loop; acknowledged at once (the gateway sends a
    frame again when its acknowledgement does not come)."""

    def __init__(self, topic: str, hand_over: Callable[[str, CallbackMessage], None]) -> None:
        super().__init__()
        self._topic = topic
        self._hand_over = hand_over

    async def process(self, message: CallbackMessage) -> tuple[int, Any]:
        self._hand_over(self._topic, message)
        return AckMessage.STATUS_OK, {}


class StreamGateway:
    """The SDK's client in its own thread: :meth:`start` on the bot's loop, frames of
    ``topics`` to ``on_frame`` there, :meth:`stop` to end it; :meth:`ended` when it did."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        api_url: str,
        topics: Iterable[str],
        on_frame: OnFrame,
    ) -> None:
        self._thread = _Thread(self._run)
        credential = Credential(client_id, client_secret)
        self._client = _Client(credential, api_url, self._thread.stopping)
        for topic in topics:
            handler = _Forward(topic, self._hand_over)
            self._client.register_callback_handler(topic, handler)
            handler.logger = SDK_LOG  # not the SDK's own, which prints past our handlers
        self._on_frame = on_frame
        self._bot_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._ended: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._bot_loop = asyncio.get_running_loop()
        self._ended = self._bot_loop.create_future()
        self._thread.start()

    async def ended(self) -> None:
        """Until the client's thread ended (it does not on its own: the SDK retries forever)."""
        assert self._ended is not None, "start() first"
        await asyncio.shield(self._ended)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _hand_over(self, topic: str, message: CallbackMessage) -> None:
        """In the client's thread: the frame's data to the bot's loop, not waited for."""
        assert self._bot_loop is not None
        data = message.data if isinstance(message.data, dict) else {}
        sent_at = message.headers.time if isinstance(message.headers.time, int) else None
        self._bot_loop.call_soon_threadsafe(self._on_frame, topic, data, sent_at)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._task = loop.create_task(self._client.start())
        self._ready.set()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        except Exception:  # the SDK ended on something it did not catch: say so, once
            log.exception("DingTalk's stream client stopped")
        finally:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:  # its keepalive and routing tasks
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.close()
            if self._bot_loop is not None and not self._bot_loop.is_closed():
                self._bot_loop.call_soon_threadsafe(self._set_ended)

    def _set_ended(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def stop(self) -> None:
        """Cancel the client until it ends: its ``start()`` swallows one cancellation per
        round (reconnecting ten seconds later), so one is not enough."""
        self._thread.stopping.set()
        if not self._thread.is_alive():
            return
        await asyncio.to_thread(self._ready.wait, STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._loop is not None and self._task is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._task.cancel)
            await asyncio.to_thread(self._thread.join, 0.1)
        if self._thread.is_alive():
            log.warning("DingTalk's stream client did not stop; leaving it to the exit")
