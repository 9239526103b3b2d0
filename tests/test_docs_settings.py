"""Every setting the code reads has exactly one row in docs/configuration.md, and no page a
reader follows (the READMEs, docs/, the example env file) names a variable the code does not
read: a setting that moved or was renamed must not live on in the documentation."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from adapters.console import ConsoleSettings
from adapters.dingtalk import DingTalkSettings
from adapters.feishu import FeishuSettings
from adapters.slack import SlackSettings
from adapters.telegram import TelegramSettings
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS: tuple[type[BaseSettings], ...] = (
    Settings,
    SlackSettings,
    TelegramSettings,
    ConsoleSettings,
    DingTalkSettings,
    FeishuSettings,
)
PREFIXES = ("MIRROR_", "SLACK_", "TELEGRAM_", "CONSOLE_", "DINGTALK_", "FEISHU_")
NAME = re.compile(r"\b(?:MIRROR|SLACK|TELEGRAM|CONSOLE|DINGTALK|FEISHU)_[A-Z0-9_]*[A-Z0-9]\b")
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|", re.MULTILINE)


def variables() -> set[str]:
    found = set()
    for settings in SETTINGS:
        prefix = str(settings.model_config.get("env_prefix") or "").upper()
        found |= {(prefix + name).upper() for name in settings.model_fields}
    return found


def test_every_setting_has_one_row_in_the_configuration_page() -> None:
    rows = ROW.findall((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"))
    documented = set(rows)
    assert sorted(name for name in set(rows) if rows.count(name) > 1) == []
    assert sorted(variables() - documented) == []
    assert sorted(documented - variables()) == []


def test_no_page_names_a_variable_the_code_does_not_read() -> None:
    pages = [
        ROOT / "README.md",
        ROOT / "README.zh-CN.md",
        ROOT / "mirror-bot.env.example",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    known = variables()
    unknown = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages
        for name in NAME.findall(page.read_text(encoding="utf-8"))
        if name not in known and name.startswith(PREFIXES)
    }
    assert sorted(unknown) == []
