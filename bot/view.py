"""A neutral description of a chat message, and a plain-text rendering of it.

``bot`` decides *what* to say (title, one row per image, code to paste); each adapter decides
*how* it looks in its own markup. The plain-text form is what the console prints and what
richer adapters can use as a notification fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from bot.i18n import _, current, duration, readers, speaking
from mirror.units import human_bytes, human_seconds

__all__ = [
    "Bar",
    "MessageView",
    "Row",
    "Tone",
    "bar_text",
    "human_bytes",
    "human_seconds",
    "translated",
]


class Tone(StrEnum):
    INFO = "info"
    WORKING = "working"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Bar:
    done: int
    total: int | None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Row:
    """One image: its name, its state word, an optional detail sentence and bar."""

    label: str
    state: str
    tone: Tone = Tone.INFO
    detail: str | None = None
    bar: Bar | None = None


class Style(StrEnum):
    """How a button looks: the usual next step, a plain one, or one that stops something."""

    PRIMARY = "primary"
    DEFAULT = "default"
    DANGER = "danger"


@dataclass(frozen=True)
class Action:
    """A button. What pressing it does is stored server-side under ``id`` (:mod:`bot.actions`):
    the chat carries only the id, so a platform's size limit (Telegram's 64 bytes) never cuts a
    command, and nobody can forge one by editing the payload. ``command`` is the same request
    typed out, which a chat without buttons (the console) shows instead."""

    id: str
    label: str
    command: str
    style: Style = Style.DEFAULT


@dataclass(frozen=True)
class MessageView:
    title: str
    tone: Tone = Tone.INFO
    rows: tuple[Row, ...] = ()
    lines: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    footer: str | None = None
    notify: bool = False
    """Ask the adapter to mention the requester (a long job just finished)."""
    actions: tuple[Action, ...] = ()
    """Buttons under the message; a view without them removes the ones an edit replaces."""
    translations: tuple[tuple[str, MessageView], ...] = ()
    """The same message in every language of a chat that shows each reader their own
    (:class:`bot.chat.Multilingual`), as ``(language, view)`` pairs, this view's own among them;
    empty for a message in one language (this view). Built by :func:`translated`."""


def translated(build: Callable[[], MessageView]) -> MessageView:
    """``build()`` in the current language; where the asker reads several at once
    (:func:`bot.i18n.speaking`'s ``readers``), carrying ``build()`` in each of them as its
    ``translations``. ``build`` must be pure (it runs once per language): a render function
    of data already at hand, never a command's handler."""
    view = build()
    languages = readers()
    if len(languages) < 2:
        return view
    versions = []
    for language in languages:
        if language == current():
            versions.append((language, view))
            continue
        with speaking(language):
            versions.append((language, build()))
    return replace(view, translations=tuple(versions))


def bar_text(bar: Bar, width: int = 16) -> str:
    """``[#######.........]  45%  12.0 MB / 26.7 MB  3.1 MB/s  ETA 5s``"""
    if bar.total:
        fraction = min(1.0, bar.done / bar.total)
        filled = round(fraction * width)
        parts = [
            "[" + "#" * filled + "." * (width - filled) + "]",
            f"{fraction * 100:3.0f}%",
            f"{human_bytes(bar.done)} / {human_bytes(bar.total)}",
        ]
    else:
        parts = [human_bytes(bar.done)]
    if bar.bytes_per_second:
        parts.append(f"{human_bytes(bar.bytes_per_second)}/s")
    if bar.eta_seconds is not None and bar.total and bar.done < bar.total:
        parts.append(_("ETA {duration}").format(duration=duration(bar.eta_seconds)))
    return "  ".join(parts)


def to_plain_text(view: MessageView) -> str:
    out = [view.title]
    for row in view.rows:
        out.append(f"- {row.label}: {row.state}")
        if row.bar is not None:
            out.append(f"    {bar_text(row.bar)}")
        if row.detail:
            out.append(f"    {row.detail}")
    out.extend(view.lines)
    if view.code:
        out.append("")
        out.extend(f"    {line}" for line in view.code)
    if view.footer:
        out.append(view.footer)
    # The console shows a button as the command that does the same; "type" is a word for the
    # reader, the command is never translated.
    out.extend(
        _("[{label}] type: {command}").format(label=action.label, command=action.command)
        for action in view.actions
    )
    return "\n".join(out)
