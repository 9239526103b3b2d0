"""What a chat command is, what its handler is given, and the grammar that finds it.

A command is one module of this package (``bot/commands/tags.py``) that declares itself with
:func:`command`: its name and other spellings, its usage line (never translated), a one-line
summary (a catalog sentence), who may run it, whether menus show it, a parser from the words
typed to a small frozen dataclass of arguments, and an async handler. :class:`Commands` holds
them all and is the one grammar every adapter's text goes through; ``/help``, the chat menus,
Slack's sub-commands, the manifest and ``docs/commands.md`` are built from it.

A handler returns the :class:`MessageView` to post as the answer, or posts itself and returns
None (``/mirror`` and ``/watch`` post an acknowledgement they follow). Refusals are raised as
:class:`~mirror.errors.MirrorError` with one sentence; the dispatcher (:mod:`bot.app`) shows
them, and refuses ``admin_only`` commands to anyone else before their handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from bot.i18n import _, speaking
from bot.paste import Ambiguous, looks_like_yaml, read_pasted, references, starts_with_pull
from bot.pasted_errors import looks_like_pull_error
from mirror.errors import MirrorError
from mirror.platform import Platform
from mirror.reference import ImageRef
from mirror.text import Text

if TYPE_CHECKING:
    from bot.approvals import Approvals
    from bot.chat import Conversation, Incoming
    from bot.following import JobFollower
    from bot.languages import Languages
    from bot.pacing import Pacer
    from bot.planner import Planner
    from bot.policy import Policy
    from bot.render import RenderOptions
    from bot.runtime import LazyLookups
    from bot.settings import Settings
    from bot.view import MessageView
    from bot.watching import ChatWatches
    from bot.web import Web
    from mirror.jobs import JobService
    from mirror.store import Store

A = TypeVar("A")

MIRROR = "mirror"
"""The command every other may follow as its first word (``/mirror watch IMAGE``): Slack
has one slash command, and some chats spell commands that way."""
HELP = "help"
"""What an empty message asks for."""

_MAX_TEXT = 8000
_MAX_PASTE = 256_000
"""A pasted manifest, ``helm template`` output or log is longer than any typed command."""


class UsageError(MirrorError):
    """The command is malformed; the sentence says how, and the answer adds the usage line."""

    with_usage: ClassVar[bool] = True


# -- what a parser reads, and what a handler is given -----------------------------------------


@dataclass(frozen=True)
class Typed:
    """One command as typed, for its parser: the words after the command's own."""

    name: str
    """The command's name (``watch`` for ``/mirror watch ...``)."""
    args: tuple[str, ...]
    text: str
    """The text after the command's word(s), as typed: ``/mirror`` reads pasted files in it."""
    default_platform: Platform | None
    max_images: int


@dataclass(frozen=True)
class Services:
    """What the bot has, for every handler; built once by :class:`bot.app.MirrorBot`."""

    settings: Settings
    service: JobService
    policy: Policy
    planner: Planner
    render_options: RenderOptions
    lookups: LazyLookups
    pacer: Pacer
    languages: Languages
    jobs: JobFollower
    watches: ChatWatches
    commands: Commands
    approvals: Approvals
    web: Web | None = None
    """The job pages and the operator's view, when ``MIRROR_WEB_URL`` is set."""

    @property
    def store(self) -> Store:
        return self.service.store


@dataclass(frozen=True)
class Context:
    """One command being answered: who asked where, the thread to answer in, the services."""

    incoming: Incoming
    conversation: Conversation
    services: Services

    @property
    def requester(self) -> str:
        """``platform:user``, as jobs, watches and buttons store their owner."""
        return f"{self.incoming.platform}:{self.incoming.user_id}"

    @property
    def chat(self) -> str:
        return f"{self.incoming.platform}:{self.incoming.chat_id}"

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def is_admin(self) -> bool:
        return self.services.policy.is_admin(self.incoming)


Parser = Callable[[Typed], A]
Handler = Callable[[Context, A], Awaitable["MessageView | None"]]


# -- one command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command(Generic[A]):
    """A chat command as its module declares it (see :func:`command`)."""

    name: str
    usage: str
    summary: str
    """A catalog sentence (``N_``), shown in the asker's language."""
    parse: Parser[A] = field(repr=False)
    handle: Handler[A] = field(repr=False)
    aliases: tuple[str, ...] = ()
    """Other spellings, each whole: ``/start``, or ``/mirror watch`` (the word after /mirror
    is this command, in every chat)."""
    admin_only: bool = False
    menu: bool = True
    """Listed in the chat's command menu (``/help`` lists every command)."""
    order: int = 1000
    """Where it stands in /help and menus (smaller first)."""
    details: str | None = None
    """A further catalog sentence for /help (what FILTER may be, what can be pasted)."""
    examples: tuple[str, ...] = ()
    """Commands to paste, shown by /help as they are (never translated)."""

    @property
    def module(self) -> str:
        return self.handle.__module__

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every other way to type it: the declared aliases, and ``/mirror NAME`` (Slack's
        one slash command takes every other command as its first word)."""
        first_word = () if self.name == MIRROR else (f"/{MIRROR} {self.name}",)
        return tuple(dict.fromkeys((*self.aliases, *first_word)))

    def summary_in(self, language: str) -> str:
        with speaking(language):
            return _(self.summary)

    def describe(self, languages: Iterable[str]) -> dict[str, object]:
        """What ``mirror-bot help --json`` prints for this command."""
        return {
            "name": self.name,
            "aliases": list(self.spellings),
            "usage": self.usage,
            "summary": {language: self.summary_in(language) for language in languages},
            "admin_only": self.admin_only,
        }


def command(
    name: str,
    *,
    usage: str,
    summary: str,
    parse: Parser[A],
    aliases: tuple[str, ...] = (),
    admin_only: bool = False,
    menu: bool = True,
    order: int = 1000,
    details: str | None = None,
    examples: tuple[str, ...] = (),
) -> Callable[[Handler[A]], Command[A]]:
    """Declare the decorated handler a chat command (its module is found by
    :func:`bot.commands.discover`)."""

    def declare(handle: Handler[A]) -> Command[A]:
        return Command(
            name, usage, summary, parse, handle,
            aliases=aliases, admin_only=admin_only, menu=menu, order=order,
            details=details, examples=examples,
        )  # fmt: skip

    return declare


@dataclass(frozen=True)
class Invocation(Generic[A]):
    """A command found and its arguments parsed: what the dispatcher runs."""

    command: Command[A]
    args: A

    async def run(self, ctx: Context) -> MessageView | None:
        return await self.command.handle(ctx, self.args)


# -- every command: the grammar ---------------------------------------------------------------


class Commands:
    """The chat commands, and the grammar every adapter's text goes through: the message
    length limits, ``/cmd@OtherBot`` left to that bot, ``/mirror WORD``, an empty message
    asking for help."""

    def __init__(self, commands: Iterable[Command[Any]]) -> None:
        self._all = tuple(sorted(commands, key=lambda c: (c.order, c.name)))
        self._first: dict[str, Command[Any]] = {}
        """Words after the slash: names and one-word aliases."""
        self._after_mirror: dict[str, Command[Any]] = {}
        """Words after ``/mirror`` that are a command in every chat."""
        for entry in self._all:
            _claim(self._first, entry.name, entry)
            for alias in entry.aliases:
                first, _, second = alias.removeprefix("/").partition(" ")
                if second and first == MIRROR:
                    _claim(self._after_mirror, second, entry)
                elif not second:
                    _claim(self._first, first, entry)
                else:
                    raise ValueError(f"/{entry.name}: `{alias}` is no spelling this grammar reads")

    def __iter__(self) -> Iterator[Command[Any]]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def __getitem__(self, name: str) -> Command[Any]:
        """The command named ``name`` (not an alias); KeyError when there is none."""
        found = self._first.get(name)
        if found is None or found.name != name:
            raise KeyError(name)
        return found

    def words(self) -> frozenset[str]:
        """Every word that is a command after a slash (``/start`` included)."""
        return frozenset(self._first)

    def subcommands(self) -> frozenset[str]:
        """The names that may follow ``/mirror`` as a command where ``/mirror`` is the only
        slash command (Slack): every command's but /mirror's own."""
        return frozenset(entry.name for entry in self._all if entry.name != MIRROR)

    def usage_line(self) -> str:
        """Every command's usage, in order: the footer of an answer to a malformed command."""
        return " · ".join(entry.usage for entry in self._all)

    def parse(
        self,
        text: str,
        *,
        default_platform: Platform | None,
        max_images: int,
        bot_username: str | None = None,
        direct: bool = False,
    ) -> Invocation[Any] | None:
        """The command in one message; None when it is addressed to another bot
        (``/cmd@OtherBot``). Raises a MirrorError (one sentence) for anything else.

        ``direct``: the message was said to the bot alone (a private chat, the console), where
        a bare message is a command, so a pasted ``docker pull …`` line there is ``/mirror``
        of its images; in a group the command is still needed."""
        pasted = looks_like_yaml(text) or looks_like_pull_error(text)
        if len(text) > (_MAX_PASTE if pasted else _MAX_TEXT):
            raise UsageError(
                Text("That message is too long ({count} characters).", count=len(text))
            )
        words = text.split()
        if not words:
            return self._invoke(self[HELP], text, (), default_platform, max_images)
        head, args = words[0], tuple(words[1:])
        rest = text.lstrip()[len(head) :]
        name, at, addressee = head.removeprefix("/").partition("@")
        if at and bot_username and addressee.lower() != bot_username.lower():
            return None
        found = self._first.get(name.lower())
        if found is not None and found.name == MIRROR and args:
            found, args, rest = self._after(found, args, rest)
        if found is None and direct and starts_with_pull(text):
            return self._invoke(self[MIRROR], text, tuple(words), default_platform, max_images)
        if found is None:
            raise UsageError(Text("`{command}` is not a command I know.", command=echo(head)))
        return self._invoke(found, rest, args, default_platform, max_images)

    def _after(
        self, mirror: Command[Any], args: tuple[str, ...], rest: str
    ) -> tuple[Command[Any], tuple[str, ...], str]:
        """``/mirror WORD ...``: the command WORD declares (``/mirror watch``), a question when
        WORD names a command that did not (``/mirror status``: the image ``status``?), else
        images to mirror."""
        word = args[0].lower()
        found = self._after_mirror.get(word)
        if found is not None:
            return found, args[1:], rest.lstrip()[len(args[0]) :]
        other = self._first.get(word)
        if other is not None and other.name == word and word != MIRROR:
            raise _which(word, args[1:])
        return mirror, args, rest

    @staticmethod
    def _invoke(
        found: Command[A],
        rest: str,
        args: tuple[str, ...],
        default_platform: Platform | None,
        max_images: int,
    ) -> Invocation[A]:
        typed = Typed(found.name, args, rest, default_platform, max_images)
        return Invocation(found, found.parse(typed))


def _claim(table: dict[str, Command[Any]], word: str, entry: Command[Any]) -> None:
    if table.setdefault(word, entry) is not entry:
        raise ValueError(f"`{word}` is claimed by /{table[word].name} and /{entry.name}")


def _which(word: str, args: tuple[str, ...]) -> Ambiguous:
    """``/mirror status`` is the command as some chats spell it, or the image ``status``: ask."""
    rest = " ".join(args)
    command_text = f"/{word} {rest}".strip()
    images = f"library/{word} {rest}".strip()
    return Ambiguous(
        Text(
            "Did you mean the command `{command}`, or to mirror the image "
            "`{word}` (send `/mirror {images}` for that)?",
            command=echo(command_text),
            word=word,
            images=echo(images),
        )
    )


# -- helpers for parsers ----------------------------------------------------------------------


@dataclass(frozen=True)
class NoArguments:
    """What a command that takes nothing parses to."""


def no_arguments(typed: Typed) -> NoArguments:
    """The parser of a command that takes no arguments (``/history``, ``/watches``)."""
    no_options(typed.args)
    if typed.args:
        raise UsageError(Text("`/{command}` takes no arguments.", command=typed.name))
    return NoArguments()


def echo(text: str) -> str:
    """What was typed, short enough to quote back in one sentence."""
    return text if len(text) <= 40 else text[:39] + "…"


def no_options(args: Iterable[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            raise UsageError(Text("`{option}` is not an option of this command.", option=echo(arg)))


def one_image(word: str) -> tuple[ImageRef, str | None, str | None]:
    """One image as /mirror reads it (an address or a name), how it was read, and the tag
    when one was written (``nginx`` alone means no tag, not ``latest``)."""
    found = references(read_pasted(word))
    if len(found) != 1 or found[0][0].name is not None:
        raise UsageError(Text("`{text}` is not one image reference.", text=echo(word)))
    spec, reading = found[0]
    written = ":" in word.rsplit("/", 1)[-1] and reading.typed is None
    tag = spec.source.tag if written and spec.source.digest is None else None
    return spec.source, reading.typed, tag
