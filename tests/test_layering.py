"""``bot/`` names no chat platform: a new one is a module in ``adapters/`` and an entry point.

Documentation may mention the platforms (examples read better with real names); code may not.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"
PLATFORMS = re.compile(r"\b(slack|telegram)", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[tuple[int, int]]:
    """Where every bare string statement starts: docstrings, and notes under attributes."""
    return {
        (node.lineno, node.col_offset)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def platform_names_in_code(source: str) -> list[tuple[int, str]]:
    """``(line, token)`` for every token of code (not a comment, not a docstring) that names
    a chat platform: identifiers, attribute names and string literals alike."""
    docs = _docstrings(ast.parse(source))
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            continue
        if token.type == tokenize.STRING and token.start in docs:
            continue
        # Word start only: ``slack_bot_token`` and ``SlackSettings`` count, ``slackness`` would.
        if PLATFORMS.search(token.string.replace("_", " ")):
            found.append((token.start[0], token.string))
    return found


def test_the_check_sees_names_in_code_and_not_in_documentation() -> None:
    source = (
        '"""Slack and Telegram in a docstring are fine."""\n'
        "# so is a Slack comment\n"
        "def f(settings):\n"
        '    """Telegram here too."""\n'
        "    return settings.slack_bot_token, 'telegram', SlackAdapter\n"
    )
    assert platform_names_in_code(source) == [
        (5, "slack_bot_token"),
        (5, "'telegram'"),
        (5, "SlackAdapter"),
    ]


def test_bot_names_no_chat_platform() -> None:
    offences = {
        f"{path.relative_to(BOT.parent)}:{line}": token
        for path in sorted(BOT.rglob("*.py"))
        for line, token in platform_names_in_code(path.read_text())
    }
    assert offences == {}
