"""Telegram HTML for a neutral :class:`~bot.view.MessageView`, split to fit one message.

Telegram's HTML parse mode knows a handful of tags and fails the whole message on a stray
``<``, so every piece of text is escaped here and nowhere else; ``backticks`` in the bot's
sentences become ``<code>``. A message holds at most 4096 characters, so an answer for many
images is cut between blocks (a ``<pre>`` is closed and reopened) into several messages.
No SDK import: this module is pure and tested on its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.view import MessageView, Row, Tone, bar_text

LIMIT = 4000
"""Below Telegram's 4096 characters (counted after entity parsing, so the HTML is longer)."""

_ICONS = {
    Tone.INFO: "ℹ️",  # noqa: RUF001
    Tone.WORKING: "⏳",
    Tone.SUCCESS: "✅",
    Tone.FAILURE: "❌",
}
_TICKS = re.compile(r"`([^`\n]+)`")
_MORE = "…"


@dataclass(frozen=True)
class Mention:
    """Who to mention when a view asks for ``notify`` (a long job just finished)."""

    user_id: int
    name: str | None = None


def inline(text: str) -> str:
    """Escape a sentence; a span in backticks becomes monospace, as in Slack and Markdown."""
    return _TICKS.sub(r"<code>\1</code>", html.escape(text, quote=False))


def mention(who: Mention) -> str:
    name = html.escape(who.name or "you")
    return f'<a href="tg://user?id={who.user_id}">{name}</a>'


def _row(row: Row) -> str:
    out = [f"• <b>{html.escape(row.label, quote=False)}</b> — {inline(row.state)}"]
    if row.bar is not None:
        out.append(f"  <code>{html.escape(bar_text(row.bar), quote=False)}</code>")
    if row.detail:
        out.append(f"  <i>{inline(row.detail)}</i>")
    return "\n".join(out)


def _pre(lines: Iterable[str]) -> str:
    return "<pre>" + html.escape("\n".join(lines), quote=False) + "</pre>"


def _code_blocks(code: tuple[str, ...], limit: int) -> list[str]:
    """The commands as ``<pre>`` blocks, as few as fit: one block per message at most."""
    blocks: list[str] = []
    current: list[str] = []
    for line in code:
        if current and len(_pre([*current, line])) > limit:
            blocks.append(_pre(current))
            current = []
        current.append(line)
    if current:
        blocks.append(_pre(current))
    return blocks


def blocks(view: MessageView, who: Mention | None = None) -> list[str]:
    """The message as paragraphs that may be split between messages, never inside."""
    title = f"{_ICONS[view.tone]} <b>{inline(view.title)}</b>"
    if view.notify and who is not None:
        title = f"{mention(who)} {title}"
    out = [title]
    out.extend(_row(row) for row in view.rows)
    out.extend(inline(line) for line in view.lines)
    out.extend(_code_blocks(view.code, LIMIT // 2))
    if view.footer:
        out.append(f"<i>{inline(view.footer)}</i>")
    if view.link is not None:  # sent with link_preview_options.is_disabled: no preview
        href = html.escape(view.link.url, quote=True)
        out.append(f'<a href="{href}">{html.escape(view.link.label, quote=False)}</a>')
    return out


def _fit(block: str, limit: int) -> str:
    """A single block too long for a message (an absurd sentence): cut as plain text."""
    if len(block) <= limit:
        return block
    text = html.unescape(re.sub(r"<[^>]+>", "", block))
    return html.escape(text[: limit // 2], quote=False) + _MORE


def pages(view: MessageView, who: Mention | None = None, limit: int = LIMIT) -> list[str]:
    """The whole message in as few Telegram messages as it takes (an answer is posted so)."""
    out: list[str] = []
    current = ""
    for block in (_fit(b, limit) for b in blocks(view, who)):
        candidate = f"{current}\n{block}" if current else block
        if current and len(candidate) > limit:
            out.append(current)
            current = block
        else:
            current = candidate
    out.append(current)
    return out


def single(view: MessageView, who: Mention | None = None, limit: int = LIMIT) -> str:
    """One message only (an edit cannot become two): what fits, then an ellipsis."""
    first, *rest = pages(view, who, limit - 2)
    return f"{first}\n{_MORE}" if rest else first
