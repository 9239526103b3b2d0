"""Extract the sentences users read into bot/locale/messages.pot and update each language's
.po from it (``bash scripts/dev.sh i18n``); tests/test_i18n.py runs the same extraction to
check the catalog is up to date.

After an update, translate the new (empty) and the fuzzy entries of zh_Hans; ``en`` is the
source language and stays empty (a missing translation is the English msgid).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "bot" / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "zh_Hans")
KEYWORDS = ("Text", "N_", "_", "ngettext:1,2")


def _pybabel(*args: str) -> None:
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        CommandLineInterface().run(["pybabel", "-q", *args])  # type: ignore[no-untyped-call]
    finally:
        os.chdir(cwd)


def extract(output: Path) -> None:
    """Every marked sentence of bot/, mirror/ and adapters/ into ``output`` (a .pot)."""
    keywords = [arg for k in KEYWORDS for arg in ("-k", k)]
    _pybabel(
        "extract",
        "-F",
        str(ROOT / "babel.cfg"),
        "--no-default-keywords",
        *keywords,
        "--add-location=file",
        "--sort-by-file",
        "--project=hub-mirror-bot",
        "--copyright-holder=hub-mirror-bot contributors",
        "-w",
        "100",
        "-o",
        str(output),
        ".",  # from the root, so locations read `bot/render.py`
    )


def _entries(pot: Path) -> list[tuple[object, ...]]:
    with pot.open("rb") as file:
        return [(m.id, tuple(m.locations), tuple(sorted(m.flags))) for m in read_po(file) if m.id]


def update() -> None:
    """Extract; rewrite the catalog only when a sentence changed (no date-only churn)."""
    pot = LOCALE / f"{DOMAIN}.pot"
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / f"{DOMAIN}.pot"
        extract(fresh)
        if pot.exists() and _entries(fresh) == _entries(pot):
            print("the catalog is up to date")
            return
        shutil.copyfile(fresh, pot)
    for language in LANGUAGES:
        po = LOCALE / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            _pybabel(
                "update",
                "-i",
                str(pot),
                "-o",
                str(po),
                "-l",
                language,
                "--ignore-obsolete",
                "--width=100",
            )
        else:
            _pybabel("init", "-i", str(pot), "-o", str(po), "-l", language, "-w", "100")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("update", "extract"))
    parser.add_argument("--output", type=Path, help="where `extract` writes the .pot")
    args = parser.parse_args(argv)
    if args.command == "extract":
        extract(args.output or LOCALE / f"{DOMAIN}.pot")
    else:
        update()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
