"""The console adapter: a terminal chat, so the bot can be tried without Slack or Telegram.

Type ``/mirror IMAGE`` at the prompt; the live message is redrawn in place on a terminal (ANSI
cursor movement) and printed anew on a pipe, so scripts and tests can read every state.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import sys
from dataclasses import dataclass
from typing import TextIO

from bot.chat import Conversation, Handler, Incoming, Reply
from bot.plugins import AdapterPlugin, AdapterSettings, SettingsPlugin
from bot.view import MessageView, to_plain_text

PROMPT = "mirror> "


class _Screen:
    """Knows what is on the terminal so the newest message can be redrawn in place."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last: tuple[int, int] | None = None  # (message id, lines it took)

    @property
    def tty(self) -> bool:
        return self._tty

    def show(self, message_id: int, text: str, *, replace: bool) -> None:
        lines = text.count("\n") + 1
        if self._tty:
            if replace and self._last is not None and self._last[0] == message_id:
                self._out.write(f"\r\x1b[{self._last[1]}A\x1b[J")
            else:
                self._out.write("\r\x1b[K")
        # On a pipe nothing can be redrawn: each new state is printed below the old one.
        self._out.write(text + "\n")
        self._last = (message_id, lines)
        self.prompt()

    def prompt(self) -> None:
        if self._tty:
            self._out.write(PROMPT)
        self._out.flush()


@dataclass
class ConsoleReply:
    screen: _Screen
    message_id: int

    @property
    def ref(self) -> str:
        return str(self.message_id)

    async def edit(self, view: MessageView) -> None:
        self.screen.show(self.message_id, to_plain_text(view), replace=True)


class ConsoleConversation:
    def __init__(self, screen: _Screen) -> None:
        self._screen = screen
        self._ids = itertools.count(1)

    @property
    def edit_interval(self) -> float:
        return 0.25 if self._screen.tty else 1.0

    async def post(self, view: MessageView) -> Reply:
        reply = ConsoleReply(self._screen, next(self._ids))
        self._screen.show(reply.message_id, to_plain_text(view), replace=False)
        return reply


class ConsoleAdapter:
    name = "console"

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self._stdin = stdin or sys.stdin
        self._screen = _Screen(stdout or sys.stdout)
        self._conversation = ConsoleConversation(self._screen)
        self._user = getpass.getuser()

    async def serve(self, handler: Handler) -> None:
        """Read commands until end of input (or ``quit``); each runs concurrently."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._stdin)
        self._screen.show(0, "hub-mirror-bot console. Type /help, or /mirror IMAGE.", replace=False)
        pending: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            text = line.decode(errors="replace").strip()
            if text in ("quit", "exit"):
                break
            if not text:
                self._screen.prompt()
                continue
            incoming = Incoming("console", self._user, self._user, "local", text)
            task = asyncio.create_task(handler(incoming, self._conversation))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        """After a restart the old lines are gone: keep the id, draw the message anew."""
        if not ref.isdigit():
            return None
        return self._conversation, ConsoleReply(self._screen, int(ref))


class ConsoleSettings(AdapterSettings, env_prefix="CONSOLE_"):
    """Nothing to set: the console is what runs when no chat is configured."""

    @property
    def configured(self) -> bool:
        return True

    def build(self) -> ConsoleAdapter:
        return ConsoleAdapter()


plugin: AdapterPlugin = SettingsPlugin(ConsoleSettings, fallback=True)
"""The ``hub_mirror_bot.adapters`` entry point; ``fallback``: only when no chat is configured."""
