"""Write the parts of files that list the chat commands, from the commands themselves
(``bot/commands``): the command table of docs/commands.md and the slash command's
``usage_hint`` in slack-app-manifest.yml. ``bash scripts/dev.sh docs`` runs ``update``;
``check`` (tests/test_command_registry.py) fails while either file differs from what ``update``
would write.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.commands import Command

ROOT = Path(__file__).resolve().parent.parent
DOC = Path("docs") / "commands.md"
MANIFEST = Path("slack-app-manifest.yml")
BEGIN = "<!-- BEGIN commands: generated from bot/commands by `bash scripts/dev.sh docs` -->"
END = "<!-- END commands -->"
_HINT = re.compile(r"^(?P<indent> *)usage_hint: .*$", re.MULTILINE)
MAX_HINT = 1000
"""What Slack's manifest schema takes in a ``usage_hint``."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def table(commands: Iterable[Command[Any]]) -> str:
    """The command table: usage, the spellings it declares (Slack's ``/mirror NAME`` is
    said once, under the table), what it does (in English)."""
    rows = ["| command | also typed as | what it does |", "| --- | --- | --- |"]
    for entry in commands:
        what = entry.summary + "."
        if entry.details:
            what += " " + entry.details
        if entry.admin_only:
            what += " Admins only."
        also = ", ".join(_code(alias) for alias in entry.aliases)
        rows.append(f"| {_code(entry.usage)} | {also} | {_cell(what)} |")
    return "\n".join(rows)


def usage_hint(commands: Iterable[Command[Any]]) -> str:
    """What follows ``/mirror`` in Slack: its own images, or another command's name."""
    hints = []
    for entry in commands:
        usage = entry.usage.removeprefix("/")
        hints.append(usage.removeprefix("mirror ") if entry.name == "mirror" else usage)
    hint = " | ".join(hints)
    if len(hint) > MAX_HINT:
        raise ValueError(f"the usage hint is {len(hint)} characters; Slack takes {MAX_HINT}")
    return hint


def render_doc(text: str, commands: Iterable[Command[Any]]) -> str:
    before, begin, rest = text.partition(BEGIN)
    _old, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC} has no {BEGIN} ... {END} block")
    return f"{before}{BEGIN}\n{table(commands)}\n{END}{after}"


def render_manifest(text: str, commands: Iterable[Command[Any]]) -> str:
    hint = usage_hint(commands).replace("\\", "\\\\").replace('"', '\\"')
    rendered, count = _HINT.subn(lambda m: f'{m["indent"]}usage_hint: "{hint}"', text)
    if count != 1:
        raise ValueError(f"{MANIFEST} has {count} usage_hint lines, not one")
    return rendered


def _generated(root: Path) -> dict[Path, str]:
    sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not
    from bot.commands import discover

    commands: list[Command[Any]] = list(discover())
    return {
        root / DOC: render_doc((root / DOC).read_text(encoding="utf-8"), commands),
        root / MANIFEST: render_manifest((root / MANIFEST).read_text(encoding="utf-8"), commands),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("update", "check"))
    parser.add_argument("--root", type=Path, default=ROOT, help="where the files are")
    args = parser.parse_args(argv)
    stale = []
    for path, text in _generated(args.root).items():
        if path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if args.command == "update":
            path.write_text(text, encoding="utf-8")
            print(f"updated {path}")
    if args.command == "check" and stale:
        names = ", ".join(str(path) for path in stale)
        print(f"out of date: {names}; run `bash scripts/dev.sh docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
