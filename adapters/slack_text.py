"""Slack text in and out: what users typed, as the grammar needs it; views as mrkdwn.

Slack escapes ``& < >`` in what it sends and wraps link-like words (``gcr.io/x``) in
``<http://gcr.io/x|gcr.io/x>``; in what we send, the same three characters are control
characters (``<!channel>`` pings everyone), so every echoed string is escaped.
"""

from __future__ import annotations

import re

from bot.view import MessageView, Tone, bar_text

SUBCOMMANDS = frozenset({"help", "status", "history", "cancel"})
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


def slash_text(command: str, text: str) -> str:
    """``/mirror status abc`` -> ``/status abc``; ``/mirror nginx`` -> ``/mirror nginx``."""
    name = command.lstrip("/").lower()
    words = text.split()
    if name in SUBCOMMANDS:
        return f"/{name} {text}".strip()
    if not words:
        return "/help"
    if words[0].lower() in SUBCOMMANDS:
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
