"""Feishu / Lark in and out: a message's text as the grammar needs it; views as cards.

Every answer is an interactive card (message card JSON 1.0): a coloured header with the
title, the rows, lines and code in ``markdown`` elements, the footer in a ``note``, buttons in
an ``action`` element whose values carry the stored action's id. A view with translations
(:func:`bot.view.translated`) becomes one card with ``i18n_header`` and ``i18n_elements``,
one set per language, and each reader's client shows their own. Cards are sent with
``update_multi`` so that an edit (``PATCH im/v1/messages``) changes them for everybody.

A card holds 30 KB: a long answer (40 images, in two languages) is cut between elements into
parts, each saying which part it is; an edit, which cannot become two messages, keeps what
fits and says how much is left out. In the markdown, ``& < >`` are written as entities (a
``<`` would start a tag such as ``<at>``); names are in backticks, where nothing is markup.
No SDK import: this module is pure and tested on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.i18n import N_, _, current, ngettext, speaking
from bot.view import MessageView, Row, Style, Tone, bar_text

Card = dict[str, Any]
Element = dict[str, Any]

LIMIT = 28 * 1024
"""Bytes of card JSON per message, below Feishu's 30 KB with room for the request around it."""
CODE_CHUNK = 4000
"""Bytes of commands per code block: the unit a long answer is cut by."""
LOCALES = {"en": "en_us", "zh_Hans": "zh_cn"}
"""The bot's languages as Feishu names them in a card's ``i18n`` keys."""
_TEMPLATES = {
    Tone.INFO: "blue",
    Tone.WORKING: "wathet",
    Tone.SUCCESS: "green",
    Tone.FAILURE: "red",
}
_ICONS = {
    Tone.INFO: "ℹ️",  # noqa: RUF001
    Tone.WORKING: "⏳",
    Tone.SUCCESS: "✅",
    Tone.FAILURE: "❌",
}
_BUTTONS = {Style.PRIMARY: "primary", Style.DEFAULT: "default", Style.DANGER: "danger"}
_TICKS = re.compile(r"(`[^`\n]+`)")
_MENTION_KEY = re.compile(r"@_user_\d+")

PART = N_("Part {part} of {parts}: the answer is too long for one card.")


# -- Feishu text in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    """Someone mentioned in a message: the placeholder in its text (``@_user_1``), their
    open_id, and the name shown."""

    key: str
    open_id: str
    name: str


def message_text(message_type: str, content: str) -> str | None:
    """The text of a ``text`` or ``post`` (rich text) message, mentions still as their
    placeholders; None for anything else (an image, a sticker, a file)."""
    try:
        body = json.loads(content or "{}")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if message_type == "text":
        text = body.get("text")
        return text if isinstance(text, str) else None
    if message_type == "post":
        return _post_text(body)
    return None


def _post_text(body: Mapping[str, Any]) -> str | None:
    """A rich-text message as lines of text: its paragraphs, with ``at`` and ``code_block``
    elements as text; the first locale when the post carries several."""
    if "content" not in body:  # {"zh_cn": {"title": ..., "content": ...}}
        body = next((v for v in body.values() if isinstance(v, dict)), {})
    paragraphs = body.get("content")
    if not isinstance(paragraphs, list):
        return None
    lines = []
    for paragraph in paragraphs:
        parts = []
        for element in paragraph if isinstance(paragraph, list) else ():
            if not isinstance(element, dict):
                continue
            if element.get("tag") == "at":
                parts.append(f"@{element.get('user_name') or element.get('user_id') or ''}")
            elif isinstance(element.get("text"), str):
                parts.append(element["text"])
        lines.append("".join(parts))
    return "\n".join(lines)


def command_text(text: str, mentions: Sequence[Mention], bot_open_id: str | None) -> str:
    """The command as typed: the bot's own mention removed, anyone else's as ``@name``."""
    names = {m.key: m for m in mentions}

    def mention(match: re.Match[str]) -> str:
        found = names.get(match.group(0))
        if found is None:
            return match.group(0)
        return " " if found.open_id == bot_open_id else f"@{found.name}"

    return _MENTION_KEY.sub(mention, text).strip()


def mentions_bot(mentions: Sequence[Mention], bot_open_id: str | None) -> bool:
    return bot_open_id is not None and any(m.open_id == bot_open_id for m in mentions)


# -- cards out ---------------------------------------------------------------------------------


def escape(text: str) -> str:
    """The three characters markdown would take for markup or a tag, as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def inline(text: str) -> str:
    """A sentence in markdown: escaped, except the spans in backticks (names), which stay code."""
    return "".join(part if _TICKS.fullmatch(part) else escape(part) for part in _TICKS.split(text))


def _code(text: str) -> str:
    """A name in backticks; a backtick inside it (no image name has one) becomes a quote."""
    return "`" + text.replace("`", "'") + "`"


def _markdown(content: str) -> Element:
    return {"tag": "markdown", "content": content}


def _row(row: Row) -> Element:
    lines = [f"**{_code(row.label)}** — {inline(row.state)}"]
    if row.bar is not None:
        lines.append(_code(bar_text(row.bar)))
    if row.detail:
        lines.append(inline(row.detail))
    return _markdown("\n".join(lines))


def _code_blocks(code: Sequence[str]) -> list[Element]:
    """The commands in code blocks of at most :data:`CODE_CHUNK` bytes each."""
    blocks: list[Element] = []
    current: list[str] = []
    size = 0
    for line in code:
        length = len(line.encode()) + 1
        if current and size + length > CODE_CHUNK:
            blocks.append(_fenced(current))
            current, size = [], 0
        current.append(line.replace("```", "'''"))
        size += length
    if current:
        blocks.append(_fenced(current))
    return blocks


def _fenced(lines: Sequence[str]) -> Element:
    return _markdown("```bash\n" + "\n".join(lines) + "\n```")


def _buttons(view: MessageView, value: Mapping[str, Any]) -> Element:
    return {
        "tag": "action",
        "actions": [
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": action.label},
                "type": _BUTTONS[action.style],
                "value": {**value, "id": action.id},
            }
            for action in view.actions
        ],
    }


def _header(view: MessageView) -> Element:
    """The title in the header, which is plain text: its backticks would show, so they go."""
    title = f"{_ICONS[view.tone]} {view.title.replace('`', '')}"
    return {"template": _TEMPLATES[view.tone], "title": {"tag": "plain_text", "content": title}}


@dataclass(frozen=True)
class Audience:
    """Who the card is for: the requester to mention when a view asks (``notify``), and what
    every button's value carries besides the action's id (where to answer a press)."""

    requester: str | None = None
    button_value: Mapping[str, Any] | None = None


def _body(view: MessageView, audience: Audience) -> list[Element]:
    """The view's content as elements that a long answer may be cut between (buttons apart)."""
    out: list[Element] = []
    if view.notify and audience.requester:
        out.append(_markdown(f"<at id={audience.requester}></at>"))
    out.extend(_row(row) for row in view.rows)
    out.extend(_markdown(inline(line)) for line in view.lines)
    out.extend(_code_blocks(view.code))
    if view.footer:
        out.append({"tag": "note", "elements": [{"tag": "plain_text", "content": view.footer}]})
    return out


def _versions(view: MessageView) -> list[tuple[str | None, MessageView]]:
    """``(Feishu locale, view)`` per language the card carries; one ``(None, view)`` without
    translations (or with a language Feishu has no locale for)."""
    found = [(LOCALES.get(language), v) for language, v in view.translations]
    if len(found) < 2 or any(locale is None for locale, _v in found):
        return [(None, view)]
    return found


def size_of(card: Card) -> int:
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())


def _card(
    headers: Sequence[tuple[str | None, Element]],
    bodies: Sequence[tuple[str | None, list[Element]]],
) -> Card:
    card: Card = {"config": {"wide_screen_mode": True, "update_multi": True}}
    if len(headers) == 1 and headers[0][0] is None:
        card["header"] = headers[0][1]
        card["elements"] = bodies[0][1]
    else:
        card["i18n_header"] = {locale: header for locale, header in headers}
        card["i18n_elements"] = {locale: body for locale, body in bodies}
    return card


@dataclass(frozen=True)
class _Prepared:
    """A view in every language its card carries: headers, bodies cut into elements (parallel
    lists: each language has the same elements, in other words), and buttons."""

    headers: list[tuple[str | None, Element]]
    bodies: list[tuple[str | None, list[Element]]]
    buttons: list[tuple[str | None, Element | None]]

    @property
    def count(self) -> int:
        return min(len(body) for _locale, body in self.bodies)

    def weight(self, index: int) -> int:
        """Bytes element ``index`` takes in the card, over every language."""
        return sum(size_of(body[index]) for _locale, body in self.bodies) + 2 * len(self.bodies)

    def card(
        self,
        start: int,
        end: int,
        extra: Mapping[str | None, Element] | None = None,
        *,
        buttons: bool = True,
    ) -> Card:
        """Elements ``start:end`` in every language, then ``extra`` (a note), then the buttons
        unless told not to."""
        bodies = []
        for (locale, body), (_l, element) in zip(self.bodies, self.buttons, strict=True):
            part = list(body[start:end])
            if extra is not None:
                part.append(extra[locale])
            if buttons and element is not None:
                part.append(element)
            bodies.append((locale, part))
        return _card(self.headers, bodies)


def _prepare(view: MessageView, audience: Audience) -> _Prepared:
    headers, bodies, buttons = [], [], []
    value = dict(audience.button_value or {})
    for locale, version in _versions(view):
        headers.append((locale, _header(version)))
        bodies.append((locale, _body(version, audience)))
        buttons.append((locale, _buttons(version, value) if version.actions else None))
    return _Prepared(headers, bodies, buttons)


def _notes(
    prepared: _Prepared, view: MessageView, say: Callable[[], str]
) -> dict[str | None, Element]:
    """A sentence of ours (``say()``) as a note, in each language of the card."""
    out: dict[str | None, Element] = {}
    languages = {LOCALES.get(language): language for language, _v in view.translations}
    for locale, _body in prepared.bodies:
        with speaking(languages.get(locale) or current()):
            text = say()
        out[locale] = {"tag": "note", "elements": [{"tag": "plain_text", "content": text}]}
    return out


def _part(
    prepared: _Prepared, view: MessageView, part: int, parts: int
) -> dict[str | None, Element]:
    return _notes(prepared, view, lambda: _(PART).format(part=part, parts=parts))


def _left_out(prepared: _Prepared, view: MessageView, count: int) -> dict[str | None, Element]:
    return _notes(
        prepared,
        view,
        lambda: ngettext(
            "…and {count} more line, which does not fit in one card.",
            "…and {count} more lines, which do not fit in one card.",
            count,
        ).format(count=count),
    )


def single(view: MessageView, audience: Audience | None = None, limit: int = LIMIT) -> Card:
    """One card (an edit cannot become two): everything that fits, then how much did not."""
    prepared = _prepare(view, audience or Audience())
    whole = prepared.card(0, prepared.count)
    if size_of(whole) <= limit:
        return whole
    reserve = size_of(prepared.card(0, 0, _left_out(prepared, view, prepared.count)))  # buttons too
    end, used = 0, reserve
    while end < prepared.count and used + prepared.weight(end) <= limit:
        used += prepared.weight(end)
        end += 1
    return prepared.card(0, end, _left_out(prepared, view, prepared.count - end))


def parts(view: MessageView, audience: Audience | None = None, limit: int = LIMIT) -> list[Card]:
    """The whole answer in as few cards as it takes, each past the first one saying which part
    it is (the first too, when there are several); buttons under the last."""
    prepared = _prepare(view, audience or Audience())
    whole = prepared.card(0, prepared.count)
    if size_of(whole) <= limit:
        return [whole]
    reserve = size_of(prepared.card(0, 0, _part(prepared, view, 99, 99)))  # with the buttons
    cuts: list[tuple[int, int]] = []
    start, used = 0, reserve
    for index in range(prepared.count):
        weight = prepared.weight(index)
        if index > start and used + weight > limit:
            cuts.append((start, index))
            start, used = index, reserve
        used += weight
    cuts.append((start, prepared.count))
    return [
        prepared.card(
            begin, end, _part(prepared, view, n, len(cuts)), buttons=end == prepared.count
        )
        for n, (begin, end) in enumerate(cuts, start=1)
    ]
