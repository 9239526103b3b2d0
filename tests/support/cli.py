"""Running ``mirror-bot`` as a user would: a subprocess with the lab's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lab as lab_module

MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")

Workers = Callable[..., subprocess.Popen[bytes]]
"""The ``workers`` fixture: start a ``mirror-bot worker`` (extra sources, extra settings)."""


def clean_env(db: Path, **overrides: str) -> dict[str, str]:
    """This process's environment without any bot setting, and a private database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_", "DINGTALK_", "FEISHU_"))
    }
    env["MIRROR_DB"] = str(db)
    for name in ("LC_ALL", "LC_MESSAGES"):  # the console answers in the terminal's language
        env.pop(name, None)
    env["LANG"] = "C.UTF-8"
    env.update(overrides)
    return env


def bot_env(lab: lab_module.Lab, db: Path, **overrides: str) -> dict[str, str]:
    """The lab's settings, with no chat credentials and a private database."""
    return clean_env(db, **{**lab.env(), **overrides})


def run_mirror(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRROR_BOT, "mirror", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = run_mirror(env, *args, "--json")
    payload = json.loads(done.stdout) if done.stdout.strip() else []
    return done.returncode, payload, done.stderr
