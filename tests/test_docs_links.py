"""Every relative link in the READMEs and docs/ leads somewhere: the file exists inside the
repository, and a `#fragment` names a heading of that page. Pages move and headings get
renamed (the README was split into docs/ once); a dead link is found here, not by a reader.

The pages use plain inline links only (`[text](target)`), so a regular expression reads them;
code (fenced blocks and inline spans) is left out, since it shows commands, not links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The page without code, where `[x](y)` is an example, not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (letters,
    digits, `_` and `-` kept, in any script), each space a `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " _-")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """One line per link of ``page`` that leads nowhere inside ``root``."""
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if SCHEME.match(target):
            continue  # https:, mailto: — not ours to check offline
        path_part, _, fragment = target.partition("#")
        where = (page.parent / unquote(path_part)).resolve() if path_part else page
        name = f"{page.relative_to(root)}: {target}"
        if not where.is_relative_to(root):
            problems.append(f"{name} (outside the repository)")
        elif not where.exists():
            problems.append(f"{name} (no such file)")
        elif fragment and where.suffix == ".md" and fragment not in anchors(where):
            problems.append(f"{name} (no such heading)")
    return problems


def test_slug_follows_github() -> None:
    assert slug("Command line: `mirror-bot`") == "command-line-mirror-bot"
    assert slug("Replies to `/mirror`") == "replies-to-mirror"
    assert slug("Beyond one machine: a front and workers on PostgreSQL") == (
        "beyond-one-machine-a-front-and-workers-on-postgresql"
    )
    assert slug("WAN: per-connection cap (100 ms, 8 MB/s)") == "wan-per-connection-cap-100-ms-8-mbs"
    assert slug("试一试\uff1a两条命令") == "试一试两条命令"  # a full-width colon is dropped too


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    """The checker itself: a good link passes; a missing file, a missing heading and a way
    out of the repository are each caught."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A part: `x`\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](other.md#a-part-x) [up](../docs) [web](https://example.com/#x) `[code](x.md)`\n"
        "[a](nowhere.md) [b](other.md#no-such-part) [c](../../outside.md)\n",
        encoding="utf-8",
    )
    assert [line.rsplit(" (", 1)[1] for line in broken(page, tmp_path.resolve())] == [
        "no such file)",
        "no such heading)",
        "outside the repository)",
    ]


def test_every_relative_link_resolves() -> None:
    assert [problem for page in pages() for problem in broken(page)] == []


def test_no_page_points_outside_the_repository() -> None:
    """The design notes live outside the repository; a reader cannot follow "DESIGN.md §5"."""
    cited = [
        str(page.relative_to(ROOT)) for page in pages() if "DESIGN.md" in page.read_text("utf-8")
    ]
    assert cited == []
