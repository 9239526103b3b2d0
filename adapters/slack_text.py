"""Slack text in and out: what users typed, as the grammar needs it; views as mrkdwn.

Slack escapes ``& < >`` in what it sends and wraps link-like words (``gcr.io/x``) in
``<http://gcr.io/x|gcr.io/x>``; in what we send, the same three characters are control
characters (``<!channel>`` pings everyone), so every echoed string is escaped.
"""

from __future__ import annotations

import functools
import re

from bot.commands import discover
from bot.view import MessageView, Style, Tone, bar_text

_MAX_TEXT = 39_000  # chat.postMessage takes 40,000 characters
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CONTROL = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_EMOJI = {
    Tone.INFO: ":information_source:",
    Tone.WORKING: ":hourglass_flowing_sand:",
    Tone.SUCCESS: ":white_check_mark:",
    Tone.FAILURE: ":x:",
}


# -- Slack text in ---------------------------------------------------------------------------


def command_text(text: str, bot_user_id: str | None = None) -> str:
    """Slack's message text as the user typed it, without the bot's own mention.

    Slack escapes ``& < >`` and wraps what looks like a link (``gcr.io/x``) as
    ``<http://gcr.io/x|gcr.io/x>``; image names need the text the user saw.
    """

    def control(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if bot_user_id and target == f"@{bot_user_id}":
            return " "
        if _SCHEME.match(target) and not target.startswith(("@", "#", "!")):
            return label if label is not None else target
        return match.group(0)  # a user, channel or special mention: left for the grammar

    plain = _CONTROL.sub(control, text)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return plain.strip()


@functools.cache
def subcommands() -> frozenset[str]:
    """The words that make ``/mirror WORD`` the command ``/WORD`` here (Slack has one slash
    command): every chat command's name but /mirror's (:mod:`bot.commands`)."""
    return discover().subcommands()


def slash_text(command: str, text: str) -> str:
    """``/mirror status abc`` -> ``/status abc``; ``/mirror nginx`` -> ``/mirror nginx``;
    ``/mirror`` alone -> ``/help``."""
    name = command.lstrip("/").lower()
    words = text.split()
    if name in subcommands():
        return f"/{name} {text}".strip()
    if not words:
        return "/help"
    if words[0].lower() in subcommands():
        return "/" + text.strip()
    return f"/mirror {text}".strip()


# -- Slack text out --------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's three control characters, so echoed text can neither ping nor break markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(view: MessageView, requester: str | None = None) -> str:
    """The neutral view in Slack mrkdwn: title, a line per image, code block, footer."""
    title = f"{_EMOJI[view.tone]} *{escape(view.title)}*"
    if view.notify and requester and _USER_ID.match(requester):
        title = f"<@{requester}> {title}"
    out = [title]
    for row in view.rows:
        out.append(f"• `{escape(row.label)}` — {escape(row.state)}")
        if row.bar is not None:
            out.append(f"      `{escape(bar_text(row.bar))}`")
        if row.detail:
            out.append(f"      {escape(row.detail)}")
    out.extend(escape(line) for line in view.lines)
    if view.code:
        out.append("```\n" + "\n".join(escape(line) for line in view.code) + "\n```")
    if view.footer:
        out.append(f"_{escape(view.footer)}_")
    text = "\n".join(out)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


# -- Block Kit, for a view with buttons ------------------------------------------------------

ACTION_PREFIX = "mirror:"
"""``action_id`` of every button we send: bolt routes them by it; the value is the stored id."""
_SECTION = 3000  # a section block's text holds at most 3,000 characters
_FENCE = "```"


def _sections(text: str) -> list[str]:
    """The mrkdwn cut between lines into sections; a cut code block is closed and reopened."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    fenced = False
    for line in text.split("\n"):
        line = line[: _SECTION - 10]
        if current and size + len(line) + 1 > _SECTION - 4:
            out.append("\n".join([*current, _FENCE] if fenced else current))
            current, size = ([_FENCE] if fenced else []), (4 if fenced else 0)
        current.append(line)
        size += len(line) + 1
        fenced ^= line.count(_FENCE) % 2 == 1
    out.append("\n".join(current))
    return out


def to_blocks(view: MessageView, requester: str | None = None) -> list[dict[str, object]]:
    """The view as Block Kit: its mrkdwn in sections, then its buttons; an empty list for a
    view without buttons (an edit sends it so a finished job's Cancel goes away)."""
    if not view.actions:
        return []
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part, "verbatim": True}}
        for part in _sections(to_mrkdwn(view, requester))
    ]
    buttons: list[dict[str, object]] = []
    for action in view.actions:
        button: dict[str, object] = {
            "type": "button",
            "text": {"type": "plain_text", "text": action.label[:75]},
            "action_id": f"{ACTION_PREFIX}{action.id}",
            "value": action.id,
        }
        if action.style is not Style.DEFAULT:
            button["style"] = action.style.value
        buttons.append(button)
    blocks.append({"type": "actions", "elements": buttons[:25]})
    return blocks
