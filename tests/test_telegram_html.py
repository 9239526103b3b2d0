"""Telegram HTML: escaped, only the tags Telegram knows, balanced, and split to fit a message."""

from __future__ import annotations

from html.parser import HTMLParser

from adapters.telegram_html import LIMIT, Mention, pages, single
from bot.view import Bar, MessageView, Row, Tone

ALLOWED = {"b", "i", "code", "pre", "a"}


class _Checker(HTMLParser):
    """Parses as Telegram would: unknown or unbalanced tags fail the whole message there."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []
        self.pre: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED, tag
        if tag == "a":
            self.links.append(dict(attrs)["href"] or "")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.open and self.open[-1] == "pre":
            self.pre.append(data)


def check(message: str) -> _Checker:
    checker = _Checker()
    checker.feed(message)
    checker.close()
    assert checker.open == []
    return checker


def test_everything_is_escaped_and_backticks_become_code() -> None:
    view = MessageView(
        title="Job <b>x</b> & friends",
        tone=Tone.FAILURE,
        rows=(Row("<img src=x>", "failed", Tone.FAILURE, "`a<b>` is not a valid reference."),),
        lines=("run `docker login r`",),
        code=("docker pull a && docker tag a <b>",),
        footer="Usage: /mirror IMAGE",
    )
    [message] = pages(view)
    checked = check(message)
    text = "".join(checked.text)
    assert "Job <b>x</b> & friends" in text
    assert "<img src=x>" in text
    assert "<code>a&lt;b&gt;</code> is not" in message
    assert "<code>docker login r</code>" in message
    assert checked.pre == ["docker pull a && docker tag a <b>"]


def test_notify_mentions_the_requester_by_id() -> None:
    view = MessageView("Job j done", Tone.SUCCESS, notify=True)
    message = single(view, Mention(42, "Alice & <Bob>"))
    checked = check(message)
    assert checked.links == ["tg://user?id=42"]
    assert message.startswith('<a href="tg://user?id=42">Alice &amp; &lt;Bob&gt;</a> ')
    assert "tg://" not in single(MessageView("Job j done", notify=False), Mention(42, "A"))


def test_a_long_answer_is_split_between_blocks_into_valid_messages() -> None:
    images = [f"gcr.io/some/long/path/to/image-{n:02d}:v1.2.3" for n in range(11)]
    target = "registry.cn-hangzhou.aliyuncs.com/myns/"
    code = []
    for image in images:
        flat = target + image.replace("/", ".")
        code.append(f"docker pull {flat} && docker tag {flat} {image}")
        code.append(f"ctr -n k8s.io images pull {flat} && ctr -n k8s.io images tag {flat} {image}")
    rows = tuple(
        Row(image, "done", Tone.SUCCESS, "x" * 300 + " · sha256:" + "0" * 64) for image in images
    )
    view = MessageView("Job j done: 11 images ready", Tone.SUCCESS, rows, code=tuple(code))
    messages = pages(view)
    assert len(messages) > 1
    pre: list[str] = []
    for message in messages:
        assert len(message) <= LIMIT
        pre.extend(check(message).pre)
    assert "\n".join(pre).splitlines() == code


def test_an_edit_stays_one_message() -> None:
    rows = tuple(Row(f"image-{n}", "copying", bar=Bar(n, 100)) for n in range(300))
    message = single(MessageView("Job j: mirroring 300 images", Tone.WORKING, rows))
    assert len(message) <= LIMIT
    assert message.endswith("\n…")
    check(message)
