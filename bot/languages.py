"""Whose language an answer is in: the asker's choice, the operator's, or the client's.

In this order: what the person chose with ``/mirror lang`` (stored per ``platform:user``),
else ``MIRROR_LANGUAGE`` when the operator pinned one, else the language tag their client
reported (``Incoming.language``: Telegram's ``language_code``, Slack's user locale, the
console's ``LANG``), else English. Adapters only report the tag; the decision is here.

A chat that shows each reader their own language (:class:`bot.chat.Multilingual`: Feishu's
cards) stands in for the client's tag when it sends none: unless the person or the operator
fixed the language, what the bot can write twice is written in every language it shows
(:meth:`Choice.readers`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.chat import Conversation, Incoming, Multilingual
from bot.i18n import ENGLISH, LANGUAGES, from_tag
from mirror.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    language: str
    unsupported_chinese: bool = False
    """The client asked for Traditional Chinese and gets English: the bot says so once."""
    fixed: bool = False
    """Chosen by the person (``/mirror lang``) or pinned by the operator (``MIRROR_LANGUAGE``):
    then a chat that could show several languages shows this one only."""

    def readers(self, conversation: Conversation) -> tuple[str, ...]:
        """The languages to write in at once in ``conversation`` (:func:`bot.i18n.speaking`'s
        ``readers``): every one it shows each reader in, unless the language is fixed or the
        client named it; else none beyond :attr:`language`."""
        if self.fixed or not isinstance(conversation, Multilingual):
            return ()
        return tuple(language for language in conversation.languages if language in LANGUAGES)


class Languages:
    def __init__(self, store: Store, default: str = "auto") -> None:
        self.store = store
        self.default = default
        """``MIRROR_LANGUAGE``: ``auto`` or one of :data:`bot.i18n.LANGUAGES`."""

    async def chosen(self, user: str) -> str | None:
        """What ``user`` chose with ``/mirror lang``; a store that fails means no choice."""
        try:
            return await self.store.get_language(user)
        except StoreError as exc:
            log.warning("could not read %s's language: %s", user, exc.__cause__ or exc)
            return None

    async def of(self, incoming: Incoming) -> Choice:
        """The language to answer ``incoming``'s sender in."""
        chosen = await self.chosen(f"{incoming.platform}:{incoming.user_id}")
        if chosen is not None:
            return Choice(chosen, fixed=True)
        if self.default != "auto":
            return Choice(self.default, fixed=True)
        client = from_tag(incoming.language)
        if client.language is None:  # no tag: a chat that shows several may show them all
            return Choice(ENGLISH)
        return Choice(client.language, client.unsupported_chinese, fixed=True)

    async def of_user(self, user: str) -> str:
        """The language of someone not asking right now (a resumed job, a watch that fired):
        their choice or the operator's, since their client's tag was not stored."""
        return (await self.choice_of(user)).language

    async def choice_of(self, user: str) -> Choice:
        """:meth:`of_user` as a :class:`Choice`, whose ``readers`` say which languages a chat
        that shows several writes in for ``user``."""
        chosen = await self.chosen(user)
        if chosen is not None:
            return Choice(chosen, fixed=True)
        if self.default != "auto":
            return Choice(self.default, fixed=True)
        return Choice(ENGLISH)
