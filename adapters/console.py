"""The console adapter: a terminal chat, so the bot can be tried without Slack or Telegram.

Type ``/mirror IMAGE`` at the prompt; the live message is redrawn in place on a terminal (ANSI
cursor movement) and printed anew on a pipe, so scripts and tests can read every state.
Commands may also come from a pipe or a file; at their end the bot finishes its jobs and stops.
With no input at all (stdin closed or ``/dev/null``, as under systemd or ``docker run``
without ``-i``) the console refuses to start: a bot nobody can talk to should not run.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import os
import shutil
import stat
import sys
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from bot.chat import ConfigurationError, Conversation, Handler, Incoming, Reply, Undeliverable
from bot.i18n import ENGLISH, N_, _, console_tag, from_tag, speaking
from bot.plugins import AdapterPlugin, AdapterSettings, SettingsPlugin
from bot.view import MessageView, Tone, to_plain_text
from mirror.tasks import TaskSet

PROMPT = "mirror> "
BANNER = N_("hub-mirror-bot console. Type /help, or /mirror IMAGE.")


class _Screen:
    """Knows what is on the terminal so the newest message can be redrawn in place.

    Only the block at the bottom, right above the prompt, can be redrawn: once anything was
    printed or typed below a message, its progress is not drawn again (the terminal would
    fill with copies of it), and its end is printed anew when it comes, whole. A block is
    measured in terminal rows, long lines wrapped, so a redraw never starts inside it.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last: tuple[int, int] | None = None
        """The message at the bottom, right above the prompt, and the rows it takes."""

    @property
    def tty(self) -> bool:
        return self._tty

    def show(self, message_id: int, text: str, *, replace: bool, working: bool = False) -> None:
        """Print a message, or redraw it (``replace``); ``working``: a state on the way to
        the message's end, which a terminal skips for a message no longer at the bottom."""
        try:
            self._draw(message_id, text, replace=replace, working=working)
        except BrokenPipeError as exc:  # the reader went away for good: no retry can help
            raise Undeliverable("the console's output was closed", "broken_pipe") from exc

    def typed(self) -> None:
        """A line was typed at the prompt: the terminal moved below the last message."""
        self._last = None

    def _draw(self, message_id: int, text: str, *, replace: bool, working: bool) -> None:
        if self._tty:
            if replace and self._last is not None and self._last[0] == message_id:
                self._out.write(f"\r\x1b[{self._last[1]}A\x1b[J")
            elif replace and working:
                return  # no longer at the bottom: its end is printed when it comes
            else:
                self._out.write("\r\x1b[K")
        # On a pipe nothing can be redrawn: each new state is printed below the old one.
        self._out.write(text + "\n")
        self._last = (message_id, self._rows(text))
        self.prompt()

    def _rows(self, text: str) -> int:
        """The terminal rows ``text`` takes, each line wrapped at the terminal's width."""
        width = max(shutil.get_terminal_size().columns, 1)
        return sum(max(1, -(-_cells(line) // width)) for line in text.split("\n"))

    def prompt(self) -> None:
        if self._tty:
            self._out.write(PROMPT)
        self._out.flush()


def _cells(line: str) -> int:
    """Columns a line takes: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


@dataclass
class ConsoleReply:
    screen: _Screen
    message_id: int

    @property
    def ref(self) -> str:
        return str(self.message_id)

    def can_become(self, view: MessageView) -> bool:
        """A terminal shows an edit as it shows a new message, whole: a job's answer always
        replaces its live message, so each job ends in one block (bot.chat.Replaceable)."""
        return True

    async def edit(self, view: MessageView) -> None:
        working = view.tone is Tone.WORKING
        self.screen.show(self.message_id, to_plain_text(view), replace=True, working=working)


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

    def __init__(self, stdin: TextIO, stdout: TextIO | None = None) -> None:
        self._stdin = stdin
        self._screen = _Screen(stdout or sys.stdout)
        self._conversation = ConsoleConversation(self._screen)
        self._user = getpass.getuser()
        self._language = console_tag()
        """The terminal's ``LC_ALL``/``LC_MESSAGES``/``LANG``, as the client's language."""

    async def serve(self, handler: Handler) -> None:
        """Read commands until end of input (or ``quit``); each runs concurrently."""
        try:
            with speaking(from_tag(self._language).language or ENGLISH):  # the terminal's
                self._screen.show(0, _(BANNER), replace=False)
        except Undeliverable:
            return  # nobody reads the output (`mirror-bot run | head` ended): nothing to serve
        commands = TaskSet("console")
        try:
            async for line in self._lines():
                self._screen.typed()
                text = line.strip()
                if text in ("quit", "exit"):
                    break
                if not text:
                    self._screen.prompt()
                    continue
                incoming = Incoming(
                    "console", self._user, self._user, "local", text, language=self._language
                )
                commands.spawn(handler(incoming, self._conversation), name="console-command")
            await commands.wait()
        finally:
            await commands.aclose()

    async def _lines(self) -> AsyncIterator[str]:
        if stat.S_ISREG(os.fstat(self._stdin.fileno()).st_mode):
            # A file cannot be watched for input (it is always ready): read it in a thread.
            while line := await asyncio.to_thread(self._stdin.readline):
                yield line
            return
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._stdin)
        while data := await reader.readline():
            yield data.decode(errors="replace")

    async def open_chat(self, chat_id: str) -> Conversation:
        """The terminal is the only chat (``console:local``): a message nobody asked for is
        printed there, like any other (:class:`bot.chat.Addressable`)."""
        return self._conversation

    async def open_private(self, user_id: str) -> Conversation:
        """Whoever has the terminal (``console:<user>``) reads it there."""
        return self._conversation

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
        return ConsoleAdapter(_usable_stdin())


plugin: AdapterPlugin = SettingsPlugin(ConsoleSettings, fallback=True)
"""The ``hub_mirror_bot.adapters`` entry point; ``fallback``: only when no chat is configured."""

NO_INPUT = (
    "No chat adapter is configured and standard input is {what}, so nobody could talk to the "
    "bot: set a chat adapter's token, or run it with a terminal (docker run -it)."
)


def _usable_stdin() -> TextIO:
    """Standard input if commands can come from it; else the reason, as a configuration error."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode if sys.stdin is not None else None
    except (OSError, ValueError):
        mode = None
    if mode is None:
        raise ConfigurationError(NO_INPUT.format(what="closed"))
    if stat.S_ISCHR(mode) and not sys.stdin.isatty():
        raise ConfigurationError(NO_INPUT.format(what="not a terminal but /dev/null"))
    return sys.stdin
