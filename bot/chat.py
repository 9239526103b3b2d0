"""The chat port: the few things ``bot`` needs from a chat platform, and nothing more.

Adapters implement these protocols; ``bot`` never imports an adapter or a chat SDK. A new
platform is one module that turns its events into :class:`Incoming` and gives back
:class:`Conversation` / :class:`Reply` handles, plus an entry point (:mod:`bot.plugins`);
``docs/adapters.md`` walks through one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.view import MessageView
from mirror.errors import MirrorError


@dataclass(frozen=True)
class Press:
    """A button pressed: its id, and a way to answer the presser alone (a refusal, "already
    done") without telling the whole chat (Slack's ephemeral message, Telegram's callback
    answer)."""

    action_id: str
    answer_privately: Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class SharedFile:
    """A file shared with the command (a Slack file share, a Telegram document): its name,
    its size when the platform says it, and how to download it (not before the bot asks)."""

    name: str
    size: int | None
    fetch: Callable[[], Awaitable[bytes]]
    """Raises :class:`ChatUnavailable` or :class:`Undeliverable` when it cannot."""


@dataclass(frozen=True)
class Incoming:
    """One command as the bot sees it: who said what, where.

    ``user_id`` and ``chat_id`` are platform ids without prefix; the policy prefixes them with
    ``platform`` (``slack:U123``, ``telegram:-100123``) to match the allowlists.
    """

    platform: str
    user_id: str
    user_name: str
    chat_id: str
    text: str
    is_group: bool = False
    bot_username: str | None = None
    """The bot's own name, so ``/mirror@OtherBot`` in a group is left to the other bot."""
    closed_by_default: bool = False
    """Platforms where anyone can write to the bot: nobody may use it until allowed."""
    press: Press | None = None
    """Set when a button was pressed (``text`` is then empty): the bot looks up its meaning."""
    file: SharedFile | None = None
    """A text file shared with the command: read as if pasted after ``text``."""
    language: str | None = None
    """The sender's client language as the platform tags it (``zh-CN``, ``en``,
    ``zh_CN.UTF-8``), or None when unknown; ``bot.languages`` decides what to answer in."""


class ConfigurationError(MirrorError):
    """An adapter cannot start with the settings given; ``str`` is one sentence for the operator."""


# What an adapter raises from a chat call, and ``bot.delivery`` on top (httpx-style, one root):
#
#   ChatError                  the chat platform did not take a call
#   ├── RateLimited            429: wait ``retry_after`` seconds and try again
#   ├── ChatUnavailable        unreachable, timed out, 5xx: a later try may work
#   ├── Undeliverable          refused for good (archived, bot removed): do not retry
#   │   └── DeliveryBug        bot.delivery: failed on a bug, logged once, not retried
#   └── GaveUp                 bot.delivery: the trouble outlasted the deadline
#                              (also a TimeoutError, as callers have long caught it)
#
# ConfigurationError (below MirrorError) is not among them: it stops the start, not a message.


class ChatError(Exception):
    """The chat platform did not take a call (a post, an edit, a download): what the platform
    did, never what the message said. Everything :mod:`bot.delivery` can raise is one."""


class RateLimited(ChatError):
    """Raised by an adapter when the chat API answered 429; the caller waits and retries."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class ChatUnavailable(ChatError):
    """Raised by an adapter when the chat API could not be reached, timed out or answered with
    a server error (5xx): the platform's trouble, not the message's, so a later try may work."""


class Undeliverable(ChatError):
    """Raised by an adapter when the chat API refused for good (archived channel, bot removed
    from the chat, message deleted): retrying cannot help, so the caller gives up at once.
    ``code`` is the platform's own word for it (``is_archived``), for the adapter's use."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class Reply(Protocol):
    """A message the bot posted and may edit."""

    @property
    def ref(self) -> str:
        """An opaque string the adapter can turn back into this handle after a restart."""
        ...

    async def edit(self, view: MessageView) -> None:
        """Replace the message's content; may raise :class:`RateLimited`,
        :class:`ChatUnavailable` or :class:`Undeliverable`."""
        ...


@runtime_checkable
class Replaceable(Protocol):
    """A :class:`Reply` that can tell whether an edit carries a view as well as a new message
    would, so that a quick job's answer may replace its acknowledgement (one call, not two).
    Optional: a platform whose answers belong in a message of their own (Slack's thread under
    the acknowledgement, where people look for them) does not implement it."""

    def can_become(self, view: MessageView) -> bool:
        """Whether an edit shows ``view`` whole (Telegram cuts an edit at one message where a
        post continues in a second) and notifies as a new message would (a terminal)."""
        ...


class Conversation(Protocol):
    """Where the answer to one command goes (the thread of the request)."""

    @property
    def edit_interval(self) -> float:
        """Seconds to leave between two edits of one message (the platform's flood limit)."""
        ...

    async def post(self, view: MessageView) -> Reply:
        """Post a new message in the request's thread; may raise :class:`RateLimited`,
        :class:`ChatUnavailable` or :class:`Undeliverable`."""
        ...


@runtime_checkable
class Gathering(Protocol):
    """A :class:`Conversation` in a chat that everyone in it reads as one stream (a Telegram
    group or private chat), so jobs asked there together may share one live message
    (:mod:`bot.gathering`). Optional, like :class:`bot.pacing.Paced`: a conversation that is
    not one (a Slack thread of its own per request) gets a live message per job."""

    @property
    def room(self) -> str:
        """Conversations of one room see each other's messages."""
        ...

    def share(self, reply: Reply) -> Reply:
        """``reply``, posted by another conversation of this room, as this one's handle:
        editing it edits that message, and its ``ref`` reopens *this* conversation after a
        restart, so this job's answer still replies to its own request."""
        ...

    def message_of(self, reply: Reply) -> str:
        """Which message ``reply`` edits: the same for every conversation's handle of it."""
        ...


@runtime_checkable
class EditsInPlace(Protocol):
    """A :class:`Conversation` that says whether its messages can be edited (optional, like
    :class:`bot.pacing.Paced`; one that does not say can).

    One that cannot (DingTalk without a card template: a robot's message is final) gets no
    progress edits from the live message and no last edit before the final answer, which
    carries the end; :meth:`Reply.edit`, when the bot still calls it (a one-off correction of
    an acknowledgement), posts the new state as a message of its own.
    """

    @property
    def edits_in_place(self) -> bool: ...


def can_edit(conversation: Conversation) -> bool:
    return not isinstance(conversation, EditsInPlace) or conversation.edits_in_place


Handler = Callable[[Incoming, Conversation], Coroutine[Any, Any, None]]


class ChatAdapter(Protocol):
    """A chat platform: serves until cancelled, handing every command to ``handler``."""

    name: str

    async def serve(self, handler: Handler) -> None: ...

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        """The thread and message behind ``Reply.ref``, to finish a job that outlived a restart."""
        ...


@runtime_checkable
class Addressable(Protocol):
    """A chat adapter that can start a conversation nobody asked in: a chat named by its id
    (``MIRROR_ADMIN_CHAT``, where approvals are asked) or one person privately (an admin, a
    one-time sign-in link). Optional beside :class:`ChatAdapter`, like
    :class:`bot.pacing.Paced`: a platform that cannot message first simply is not one.

    Ids are the platform's own, without the ``platform:`` prefix. Both raise
    :class:`Undeliverable` when the platform refuses for good (the bot is not in that chat,
    the person never opened a private chat with it), so the caller can say so instead.
    """

    async def open_chat(self, chat_id: str) -> Conversation:
        """Where to post in the chat ``chat_id`` (not a thread of any message)."""
        ...

    async def open_private(self, user_id: str) -> Conversation:
        """A private conversation with the person ``user_id``."""
        ...


@runtime_checkable
class Multilingual(Protocol):
    """A :class:`Conversation` whose messages can carry one text per language at once, each
    reader's client showing its own (Feishu's card ``i18n``). Optional, like
    :class:`bot.pacing.Paced`.

    When the asker's language was not fixed (no ``/mirror lang``, ``MIRROR_LANGUAGE=auto``) and
    their client says none, the bot writes the views it can build twice (a job's messages, a
    refusal) in each of ``languages`` and hands the adapter one view whose ``translations`` hold
    them all (:func:`bot.view.translated`); everything else comes in one language as usual.
    """

    @property
    def languages(self) -> tuple[str, ...]:
        """The bot's languages (:data:`bot.i18n.LANGUAGES`) this conversation can show."""
        ...
