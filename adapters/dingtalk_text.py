"""DingTalk text in and out: what people typed, as the grammar needs it; views as DingTalk
markdown (a robot's ``sampleMarkdown`` message) and as an interactive card's data.

DingTalk markdown is a small CommonMark: paragraphs need a blank line between them, a
backtick span is code, and ``* _ [ ] < >`` make emphasis, links and HTML (``<font>``), so
every echoed string is escaped outside its backtick spans. A robot message holds at most
15,000 bytes of parameters: longer text is cut between lines (a cut code block is closed).
A message cannot carry buttons, so without a card template each button is shown as the
command that does the same. No SDK import: this module is pure and tested on its own.
"""

from __future__ import annotations

import json
import re

from bot.i18n import _
from bot.view import MessageView, Row, Tone, bar_text

LIMIT = 12_000
"""Bytes of markdown in one message (UTF-8), below the 15,000 of a robot message's
parameters, which also carry the title and the JSON around them."""

_ICONS = {
    Tone.INFO: "ℹ️",  # noqa: RUF001
    Tone.WORKING: "⏳",
    Tone.SUCCESS: "✅",
    Tone.FAILURE: "❌",
}
_TICKS = re.compile(r"(`[^`\n]+`)")
_SPECIAL = re.compile(r"([\\*_\[\]<>])")
_FENCE = "```"
_MORE = "…"


# -- DingTalk text in ----------------------------------------------------------------------------


_MENTIONS = re.compile(r"^(?:@\S+\s+)+")


def command_text(text: str) -> str:
    """A message's text as the grammar reads it. DingTalk leaves the ``@robot`` mention out of
    a group message's text (what remains starts with a space), but other mentions before the
    command stay (``@bob mirror x``): they are dropped, and full-width spaces become spaces;
    ``bot.paste`` reads the rest."""
    return _MENTIONS.sub("", text.replace("\u3000", " ").strip())


# -- DingTalk markdown out -----------------------------------------------------------------------


def escape(text: str) -> str:
    """Markdown's control characters, backslashed, so echoed text stays text."""
    return _SPECIAL.sub(r"\\\1", text)


def inline(text: str) -> str:
    """A sentence of the bot's: escaped, except its ``backtick`` spans, which stay code."""
    return "".join(
        part if _TICKS.fullmatch(part) else escape(part) for part in _TICKS.split(text) if part
    )


def code(text: str) -> str:
    """Any text as one backtick span (a backtick inside becomes a quote: spans cannot nest)."""
    return "`" + text.replace("`", "'") + "`"


def title_text(view: MessageView) -> str:
    """The plain title: what DingTalk shows in the chat list and the notification."""
    return f"{_ICONS[view.tone]} {view.title}"


def _row(row: Row) -> str:
    out = [f"{code(row.label)} — {inline(row.state)}"]
    if row.bar is not None:
        out.append(code(bar_text(row.bar)))
    if row.detail:
        out.append(f"*{inline(row.detail)}*")
    return "  \n".join(out)  # two spaces: a line break inside the paragraph


def body_blocks(view: MessageView, *, typed_actions: bool) -> list[str]:
    """The view below its title, one markdown block each. ``typed_actions``: no buttons here
    (a plain message), so each button is shown as the command that does the same."""
    out = [_row(row) for row in view.rows]
    out.extend(inline(line) for line in view.lines)
    if view.code:
        out.append("\n".join([_FENCE, *view.code, _FENCE]))
    if view.footer:
        out.append(f"*{inline(view.footer)}*")
    if typed_actions:
        # The same catalog sentence as the console's; the command itself is never translated.
        out.extend(
            escape(_("[{label}] type: {command}").format(label=action.label, command="\0")).replace(
                "\0", code(action.command)
            )
            for action in view.actions
        )
    return out


def markdown(view: MessageView, *, mention: str | None = None, typed_actions: bool = True) -> str:
    """The whole message: bold title, then the blocks, cut to :data:`LIMIT` bytes.

    ``mention``: the staffId to ``@`` when the view asks to notify (DingTalk pings only the
    ids also listed in the message's ``at``, which the caller sends along)."""
    title = f"**{inline(title_text(view))}**"
    if view.notify and mention:
        title = f"@{mention} {title}"
    return fit("\n\n".join([title, *body_blocks(view, typed_actions=typed_actions)]))


def fit(text: str, limit: int = LIMIT) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its first lines and an ellipsis; a
    code block left open by the cut is closed."""
    if len(text.encode()) <= limit:
        return text
    kept: list[str] = []
    size = len(_FENCE) + len(_MORE) + 4
    for line in text.split("\n"):
        size += len(line.encode()) + 1
        if size > limit:
            break
        kept.append(line)
    if sum(line.startswith(_FENCE) for line in kept) % 2:
        kept.append(_FENCE)
    return "\n".join([*kept, _MORE])


# -- the interactive card's data -----------------------------------------------------------------


def card_params(view: MessageView) -> dict[str, str]:
    """What an update of a card sends (``cardParamMap``: strings only, so the buttons are a
    JSON array): ``title``, ``content`` (markdown below the title), ``tone``
    (``info``/``working``/``success``/``failure``), ``buttons`` (``[{"id", "label",
    "style"}]``: a card template shows them in a loop and sends ``id`` back as the callback's
    ``action`` parameter) and ``hasButtons`` (``true``/``false``, to hide the row).
    docs/chat-platforms.md says how a template uses them."""
    buttons = [{"id": a.id, "label": a.label, "style": a.style.value} for a in view.actions]
    content = "\n\n".join(body_blocks(view, typed_actions=False))
    return {
        "title": title_text(view),
        "content": fit(content),
        "tone": view.tone.value,
        "buttons": json.dumps(buttons, ensure_ascii=False),
        "hasButtons": "true" if buttons else "false",
    }
