"""A sentence for people, kept translatable without ``mirror/`` choosing a language.

``mirror/`` builds the sentences a chat user reads (refusals, copy failures, suggestions) but
knows no chat and no asker. A :class:`Text` is the English sentence *and* what it was made
of: the catalog template (``msgid``, a python-brace-format string with named placeholders) and
its parameters. Everything that wants a plain string (``str(error)``, the store, ``--json``,
logs) gets English for free, because a ``Text`` *is* that string; ``bot/i18n.py`` renders the
same value in the asker's language. ``Text("...")`` calls are what ``pybabel extract`` looks
for (``babel.cfg``), so the template must be a literal.
"""

from __future__ import annotations

from typing import Any


class Text(str):
    """``Text("{image} is too large.", image="nginx")``: equal to its English sentence."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, /, **params: Any) -> Text:
        self = super().__new__(cls, msgid.format(**params) if params else msgid)
        self.msgid = msgid
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep the template
        return (_rebuild, (self.msgid, self.params))


def N_(msgid: str) -> str:
    """Marks a template for extraction where it is not yet a ``Text`` (a table of
    templates filled in later); translated where it is shown."""
    return msgid


def _rebuild(msgid: str, params: dict[str, Any]) -> Text:
    return Text(msgid, **params)


def text_of(error: BaseException) -> str:
    """The sentence an exception was raised with, a :class:`Text` when it was one
    (``str(error)`` would flatten it to English)."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, str) else str(error)
