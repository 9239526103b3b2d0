"""Whose language an answer is in: the asker's choice, the operator's, or the client's.

In this order: what the person chose with ``/mirror lang`` (stored per ``platform:user``),
else ``MIRROR_LANGUAGE`` when the operator pinned one, else the language tag their client
reported (``Incoming.language``: Telegram's ``language_code``, Slack's user locale, the
console's ``LANG``), else English. Adapters only report the tag; the decision is here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.chat import Incoming
from bot.i18n import ENGLISH, from_tag
from mirror.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    language: str
    unsupported_chinese: bool = False
    """The client asked for Traditional Chinese and gets English: the bot says so once."""


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
            return Choice(chosen)
        if self.default != "auto":
            return Choice(self.default)
        client = from_tag(incoming.language)
        return Choice(client.language or ENGLISH, client.unsupported_chinese)

    async def of_user(self, user: str) -> str:
        """The language of someone not asking right now (a resumed job, a watch that fired):
        their choice or the operator's, since their client's tag was not stored."""
        chosen = await self.chosen(user)
        if chosen is not None:
            return chosen
        return ENGLISH if self.default == "auto" else self.default
