"""The command registry (bot/commands): found by name, and everything that lists commands
built from it: ``mirror-bot help``, /help, the chat menus, Slack's words, the generated files.

The bot here is the real one (``MirrorBot`` over a real SQLite store) with one command added
the way a module adds one, to see the dispatcher enforce ``admin_only`` by itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import bot.commands
from adapters import slack_text, telegram
from bot.commands import Commands, Context, Typed, command, discover, no_arguments
from bot.i18n import CHINESE, ENGLISH, LANGUAGES, N_
from bot.view import MessageView
from tests.support.cli import MIRROR_BOT, clean_env
from tests.test_app import running_bot, say, settings_for

ROOT = Path(__file__).resolve().parent.parent
DOCS_SCRIPT = ROOT / "scripts" / "docs.py"


# -- found by name ----------------------------------------------------------------------------


def test_each_module_of_the_package_is_the_command_of_its_name() -> None:
    modules = sorted(
        info.name for info in pkgutil.iter_modules(bot.commands.__path__) if info.name[0] != "_"
    )
    commands = discover()
    assert sorted(entry.name for entry in commands) == modules
    assert commands["tags"].module == "bot.commands.tags"
    assert commands["help"].module == "bot.commands.help"
    with pytest.raises(KeyError):
        commands["start"]  # an alias, not a name
    assert {"start", "help", "tags", "lang"} <= commands.words()


def test_every_command_has_a_usage_and_a_summary_in_english_and_chinese() -> None:
    for entry in discover():
        assert entry.usage.split()[0] == f"/{entry.name}", entry.name
        english, chinese = entry.summary_in(ENGLISH), entry.summary_in(CHINESE)
        assert english and chinese and chinese != english, entry.name
        assert not any(ord(c) > 0x2E80 for c in english), entry.name


def test_two_commands_cannot_claim_one_word() -> None:
    @command("status", usage="/status", summary=N_("What this chat mirrored"), parse=no_arguments)
    async def other(ctx: Context, args: object) -> None:
        return None

    with pytest.raises(ValueError, match="`status` is claimed by /status and /status"):
        Commands([*discover(), other])


# -- help, menus, Slack ------------------------------------------------------------------------


def _mirror_bot(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRROR_BOT, *args],
        env=clean_env(Path("/nonexistent/unused.db"), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_help_json_prints_every_command_in_both_languages() -> None:
    done = _mirror_bot("help", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert [entry["name"] for entry in printed] == [entry.name for entry in discover()]
    for entry in printed:
        assert list(entry) == ["name", "aliases", "usage", "summary", "admin_only"]
        assert not entry["name"].startswith("/")
        assert set(entry["summary"]) == set(LANGUAGES) == {"en", "zh_Hans"}
        # Only the admins' answers to held requests are theirs alone.
        assert entry["admin_only"] is (entry["name"] in ("approve", "deny")), entry["name"]
    by_name = {entry["name"]: entry for entry in printed}
    assert by_name["tags"] == {
        "name": "tags",
        "aliases": ["/mirror tags"],
        "usage": "/tags IMAGE [FILTER]",
        "summary": {"en": "An image's tags, newest first", "zh_Hans": "镜像的标签，新的在前"},
        "admin_only": False,
    }
    assert by_name["lang"]["aliases"] == ["/mirror lang", "/mirror language"]
    assert by_name["help"]["aliases"] == ["/start", "/mirror help"]
    assert by_name["mirror"]["aliases"] == []


@pytest.mark.slow
def test_help_is_a_table_in_the_operators_language_and_version_is_the_packages() -> None:
    english = _mirror_bot("help")
    chinese = _mirror_bot("help", MIRROR_LANGUAGE="zh")
    by_locale = _mirror_bot("help", LANG="zh_CN.UTF-8")
    version = _mirror_bot("--version")
    assert english.returncode == chinese.returncode == by_locale.returncode == 0
    lines = english.stdout.splitlines()
    assert len(lines) == len(discover())
    assert lines[1].split()[:4] == ["tags", "/tags", "IMAGE", "[FILTER]"]
    assert lines[1].endswith("An image's tags, newest first")
    assert chinese.stdout.splitlines()[1].endswith("镜像的标签，新的在前")
    assert by_locale.stdout == chinese.stdout
    assert version.stdout.strip().endswith(importlib.metadata.version("hub-mirror-bot"))
    assert "Usage: mirror-bot [OPTIONS] COMMAND" in _mirror_bot("--help").stdout


def test_help_in_chat_lists_every_command_from_the_registry() -> None:
    from bot import render
    from bot.view import to_plain_text

    shown = to_plain_text(render.help_text(discover()))
    for entry in discover():
        assert f"{entry.usage} — {entry.summary}" in shown
    assert "/tags nginx 1.25" in shown  # an example, as declared by /tags


def test_telegram_menus_and_group_words_come_from_the_registry() -> None:
    for language in (ENGLISH, CHINESE):
        shown = telegram.menu(language)
        assert [c.command for c in shown] == [e.name for e in discover() if e.menu]
        for entry in shown:  # what setMyCommands accepts
            assert re.fullmatch(r"[a-z0-9_]{1,32}", entry.command)
            assert 1 <= len(entry.description) <= 256
    tags = {c.command: c.description for c in telegram.menu(CHINESE)}["tags"]
    assert tags == "镜像的标签，新的在前：/tags IMAGE [FILTER]"
    history = {c.command: c.description for c in telegram.menu(ENGLISH)}["history"]
    assert history == "What this chat mirrored"
    assert telegram._is_ours("/confirm k3x9qa", "MirrorBot")
    assert telegram._is_ours("/start", "MirrorBot")
    assert not telegram._is_ours("/frobnicate", "MirrorBot")


def test_slack_takes_every_other_command_as_the_first_word_of_mirror() -> None:
    assert slack_text.subcommands() == {e.name for e in discover()} - {"mirror"}
    assert slack_text.slash_text("/mirror", "watch nginx") == "/watch nginx"
    assert slack_text.slash_text("/mirror", "lang zh") == "/lang zh"
    assert slack_text.slash_text("/mirror", "start") == "/mirror start"  # the image `start`


# -- the generated files -----------------------------------------------------------------------


def _docs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCS_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_generated_command_lists_are_current() -> None:
    """``bash scripts/dev.sh docs`` was run after the last change to a command."""
    done = _docs("check")
    assert done.returncode == 0, done.stderr


def test_a_stale_command_list_is_found_and_rewritten(tmp_path: Path) -> None:
    for name in ("docs/commands.md", "slack-app-manifest.yml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    doc = tmp_path / "docs/commands.md"
    doc.write_text(doc.read_text().replace("| `/history` |", "| `/histories` |"))
    manifest = tmp_path / "slack-app-manifest.yml"
    manifest.write_text(manifest.read_text().replace("| history |", "| "))
    stale = _docs("check", "--root", str(tmp_path))
    assert stale.returncode == 1
    assert "commands.md" in stale.stderr and "slack-app-manifest.yml" in stale.stderr
    assert _docs("update", "--root", str(tmp_path)).returncode == 0
    for name in ("docs/commands.md", "slack-app-manifest.yml"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text()


# -- admin-only, enforced by the dispatcher ----------------------------------------------------


@dataclass(frozen=True)
class _Opened:
    pass


def _parse_sesame(typed: Typed) -> _Opened:
    return _Opened()


async def test_an_admin_only_command_is_refused_to_others_before_it_runs(tmp_path: Path) -> None:
    ran: list[str] = []

    @command(
        "sesame",
        usage="/sesame",
        summary=N_("What this chat mirrored"),
        parse=_parse_sesame,
        admin_only=True,
    )
    async def sesame(ctx: Context, args: _Opened) -> MessageView:
        ran.append(ctx.requester)
        return MessageView("open")

    commands = Commands([*discover(), sesame])
    settings = settings_for(tmp_path, "127.0.0.1:5999", "127.0.0.1:5998")
    async with running_bot(settings, commands=commands) as bot:
        refused = await say(bot, "dave", "room", "/sesame")
        answered = await say(bot, "carol", "room", "/sesame")  # carol is an admin
        shown = await say(bot, "dave", "room", "/help")
    assert refused.texts == ["Only an admin may use `/sesame`."]
    assert answered.texts == ["open"]
    assert ran == ["test:carol"]
    assert "/sesame — What this chat mirrored" in shown.texts[0]
