"""Answers in the asker's language: which language, and the sentences in it (issue 17).

The catalog is gettext's, kept as ``.po`` files in ``bot/locale`` (``bash scripts/dev.sh
i18n`` extracts and updates them) and read at run time with Babel, only when a language
other than English is first spoken: English is the source text, so an English bot never
imports Babel nor reads a file (``mirror-bot mirror`` start-up stays light).

Rendering reads the language from a context variable that :func:`speaking` sets around
everything done for one asker (as Django's ``translation.override``): render functions keep
their signatures, and a task started inside inherits the language. ``_``, :func:`ngettext`
and :func:`localize` (for a :class:`mirror.text.Text` built in ``mirror/``) translate; a
sentence the catalog lacks, or has only as fuzzy, stays English, never a key.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from mirror.text import N_, Text
from mirror.units import human_seconds

__all__ = ["N_", "_", "ago", "duration", "join", "localize", "ngettext", "readers", "speaking"]

ENGLISH = "en"
CHINESE = "zh_Hans"
LANGUAGES = (ENGLISH, CHINESE)
"""What the bot speaks: gettext locale names, as the catalog directories are named."""
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"

_TRADITIONAL = ("zh-hant", "zh-tw", "zh-hk", "zh-mo")

_speaking: ContextVar[str] = ContextVar("speaking", default=ENGLISH)
_readers: ContextVar[tuple[str, ...]] = ContextVar("readers", default=())


@contextmanager
def speaking(language: str, *, readers: Sequence[str] = ()) -> Iterator[None]:
    """Render in ``language`` inside the block (and in tasks started inside it).

    ``readers``: the languages a message is written in at once, for a chat that shows each
    reader their own (:class:`bot.chat.Multilingual`); :func:`bot.view.translated` builds a view
    in each. Empty (the usual case, and whenever ``speaking`` is entered without it): only
    ``language``."""
    token = _speaking.set(language)
    readers_token = _readers.set(tuple(readers))
    try:
        yield
    finally:
        _readers.reset(readers_token)
        _speaking.reset(token)


def current() -> str:
    return _speaking.get()


def readers() -> tuple[str, ...]:
    """The languages of :func:`speaking`'s ``readers`` (empty: :func:`current` only)."""
    return _readers.get()


@dataclass(frozen=True)
class ClientLanguage:
    """What a client's language tag (``zh-CN``, ``zh_TW.UTF-8``) comes to here."""

    language: str | None
    """One of :data:`LANGUAGES`, or None when the tag names none we speak."""
    unsupported_chinese: bool = False
    """The tag asked for Traditional Chinese, which the bot does not speak (yet)."""


def from_tag(tag: str | None) -> ClientLanguage:
    """A BCP 47 tag (Telegram, Slack) or a POSIX locale (``LANG``) as a language we speak."""
    if not tag:
        return ClientLanguage(None)
    clean = tag.split(".", 1)[0].split("@", 1)[0].replace("_", "-").strip().lower()
    if clean in ("c", "posix", ""):
        return ClientLanguage(None)
    if clean.startswith(_TRADITIONAL):
        return ClientLanguage(ENGLISH, unsupported_chinese=True)
    if clean == "zh" or clean.startswith("zh-"):  # zh-Hans, zh-CN, zh-SG
        return ClientLanguage(CHINESE)
    if clean.split("-", 1)[0] == "en":
        return ClientLanguage(ENGLISH)
    return ClientLanguage(None)


def console_tag(environ: Mapping[str, str] = os.environ) -> str | None:
    """The terminal's language, as gettext reads it: ``LC_ALL``, ``LC_MESSAGES``, ``LANG``."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if environ.get(name):
            return environ[name]
    return None


def parse_language(value: str) -> str:
    """A language as typed in ``/mirror lang`` or ``MIRROR_LANGUAGE``: ``en``, ``zh``,
    ``zh_Hans``, ``zh-CN``..., as one of :data:`LANGUAGES`; ValueError for any other."""
    found = from_tag(value)
    if found.language is None or found.unsupported_chinese:
        raise ValueError(value)
    return found.language


# -- the catalog ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalog:
    messages: Mapping[Any, Any]
    """``msgid`` (``(singular, plural)`` for plural entries) -> translation (a tuple of forms
    for plural entries); untranslated and fuzzy entries are left out, so they stay English."""
    plural: Callable[[int], int]
    """Which form ``n`` takes (the catalog's ``Plural-Forms``: Chinese has one)."""


@functools.cache
def _catalog(language: str) -> _Catalog:
    import gettext  # for c2py: the catalog's plural rule as a function

    from babel.messages.pofile import read_po  # the first non-English answer pays for it

    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return _Catalog({}, lambda n: int(n != 1))
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    found: dict[Any, Any] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple | list):
            forms = tuple(message.string or ())
            if forms and all(forms):
                found[(message.id[0], message.id[1])] = forms
        elif message.string:
            found[message.id] = message.string
    return _Catalog(found, gettext.c2py(catalog.plural_expr))


def _(message: str) -> str:
    """``message`` in the current language (the name ``pybabel extract`` looks for)."""
    language = current()
    if language == ENGLISH:
        return message
    return str(_catalog(language).messages.get(message, message))


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form for ``n`` in the current language (English: singular for 1)."""
    language = current()
    english = singular if n == 1 else plural
    if language == ENGLISH:
        return english
    catalog = _catalog(language)
    forms = catalog.messages.get((singular, plural))
    index = catalog.plural(n)
    return str(forms[index]) if forms and index < len(forms) else english


@overload
def localize(sentence: str) -> str: ...
@overload
def localize(sentence: None) -> None: ...
def localize(sentence: str | None) -> str | None:
    """A sentence from ``mirror/`` (a :class:`Text`, or a plain string such as one read
    back from the store) in the current language; a plain string the catalog knows as a
    whole is translated too."""
    if sentence is None or current() == ENGLISH:
        return sentence
    if isinstance(sentence, Text):
        params = {
            key: localize(value) if isinstance(value, Text) else value
            for key, value in sentence.params.items()
        }
        template = _(sentence.msgid)
        try:
            return template.format(**params) if params else template
        except (KeyError, IndexError, ValueError):  # a broken translation: English, not a key
            return str.__str__(sentence)
    return _(sentence)


# -- numbers and lists as each language writes them ------------------------------------------
#
# English keeps the compact forms the bot always used (``6h00m``, ``11s ago``, ``a, b and c``),
# without Babel; another language gets CLDR's, through Babel (``6小时``, ``11秒钟前``, ``a、b和c``),
# so no English-shaped unit or ASCII comma lands between its words.


def duration(seconds: float) -> str:
    """How long, in the current language: ``1h02m`` / ``1小时2分钟`` (the two largest units)."""
    language = current()
    if language == ENGLISH:
        return human_seconds(seconds)
    from babel.lists import format_list
    from babel.units import format_unit

    s = max(0, round(seconds))
    if s < 60:
        parts = [(s, "second")]
    elif s < 3600:
        parts = [(s // 60, "minute"), (s % 60, "second")]
    else:
        parts = [(s // 3600, "hour"), (s % 3600 // 60, "minute")]
    shown = [
        format_unit(value, f"duration-{unit}", "narrow", locale=language)
        for value, unit in parts
        if value or unit == "second"
    ]
    return format_list(shown, style="unit-narrow", locale=language)


def ago(seconds: float) -> str:
    """How long ago, in the current language: ``2m30s ago``, ``3 days ago`` / ``3分钟前``."""
    language = current()
    if language == ENGLISH:
        days = int(seconds // 86400)
        if days >= 2:
            return _("{days} days ago").format(days=days)
        return _("{duration} ago").format(duration=human_seconds(seconds))
    from datetime import timedelta

    from babel.dates import format_timedelta

    since = timedelta(seconds=-max(seconds, 1.0))
    return format_timedelta(since, add_direction=True, locale=language)


def join(items: Sequence[str]) -> str:
    """A list in the current language: ``a, b and c`` / ``a、b和c``."""
    language = current()
    if language != ENGLISH:
        from babel.lists import format_list

        return format_list(list(items), locale=language)
    if len(items) < 2:
        return "".join(items)
    return _("{items} and {last}").format(items=", ".join(items[:-1]), last=items[-1])
