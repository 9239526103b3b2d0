"""Hostile input: whatever is typed, the answer is a sentence, never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import parse_command
from mirror.errors import MirrorError
from mirror.platform import DEFAULT_PLATFORM

WORDS = st.sampled_from(
    [
        "/mirror",
        "/status",
        "/cancel",
        "/history",
        "/help",
        "/mirror@Bot",
        "mirror",
        "--platform",
        "--platform=all",
        "linux/arm64",
        "all",
        "nginx",
        "gcr.io/x/y:v1",
        "a$b:c",
        "$",
        "@sha256:",
        "<!channel>",
        "<b>x</b>",
        "`rm -rf /`",
        ";",
        "|",
        "\u202e",
        "\uff4e\uff47\uff49\uff4e\uff58",  # fullwidth look-alike of nginx
        "\x00",
        "\x1b[2J",
        "-",
        "--",
        "x" * 300,
    ]
)
MESSAGES = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(WORDS, st.text(max_size=30)), max_size=20).map(" ".join),
)


@settings(max_examples=600, deadline=None)
@given(MESSAGES)
def test_any_message_parses_or_is_refused_with_one_sentence(text: str) -> None:
    try:
        parse_command(text, default_platform=DEFAULT_PLATFORM, max_images=11, bot_username="Bot")
    except MirrorError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400
        assert message.rstrip("`'\"").endswith((".", "?"))
