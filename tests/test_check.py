"""``mirror-bot check`` against real services: the lab's registries and daemon, and local
servers speaking the Slack Web API and the Telegram Bot API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import lab as lab_module
from tests.support.cli import MIRROR_BOT, bot_env, clean_env
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import FakeTelegram

SLACK_TOKEN = "xoxb-check-token"
TELEGRAM_TOKEN = "123456:check-token"


async def check(env: dict[str, str]) -> tuple[int, list[str], str]:
    """Run ``mirror-bot check`` without blocking the loop (the fake Telegram server is on it)."""
    proc = await asyncio.create_subprocess_exec(
        MIRROR_BOT,
        "check",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode()


async def test_a_good_configuration_passes(lab: lab_module.Lab, tmp_path: Path) -> None:
    env = bot_env(
        lab,
        tmp_path / "check.db",
        MIRROR_TARGET=f"{lab.auth}/mirror",
        MIRROR_TARGET_USERNAME=lab.env()["LAB_AUTH_USER"],
        MIRROR_TARGET_PASSWORD=lab.env()["LAB_AUTH_PASSWORD"],
    )
    code, lines, err = await check(env)
    assert lines == [
        "configuration: ok",
        f"target registry: ok ({lab.auth}, logged in as {env['MIRROR_TARGET_USERNAME']})",
        f"docker daemon: ok ({lab.env()['DOCKER_HOST']})",
    ], err
    assert code == 0


async def test_a_wrong_password_and_a_dead_daemon_fail_with_one_sentence_each(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    dead = f"unix://{tmp_path}/no-daemon.sock"
    env = bot_env(
        lab,
        tmp_path / "check.db",
        MIRROR_TARGET=f"{lab.auth}/mirror",
        MIRROR_TARGET_USERNAME=lab.env()["LAB_AUTH_USER"],
        MIRROR_TARGET_PASSWORD="not-the-password",
        MIRROR_ENGINE="docker",
        DOCKER_HOST=dead,
    )
    code, lines, err = await check(env)
    assert code == 1
    assert lines == [
        "configuration: ok",
        f"target registry: FAILED: {lab.auth} refused the login of "
        f"{env['MIRROR_TARGET_USERNAME']}: check MIRROR_TARGET_USERNAME and "
        "MIRROR_TARGET_PASSWORD (or `docker login`).",
        f"docker daemon: FAILED: The Docker daemon at `{dead}` does not answer.",
    ]
    assert "not-the-password" not in "\n".join(lines) + err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "value", "bound"),
    [
        ("MIRROR_CONCURRENCY", "0", "greater than or equal to 1"),
        ("MIRROR_BLOB_STREAMS", "0", "greater than or equal to 1"),
        ("MIRROR_BLOB_STREAMS", "17", "less than or equal to 16"),
    ],
)
async def test_a_setting_out_of_range_is_named_and_exits_2(
    lab: lab_module.Lab, tmp_path: Path, name: str, value: str, bound: str
) -> None:
    """Exit 2 for configuration, as from ``run`` and ``mirror``; 1 is for services failing."""
    env = bot_env(lab, tmp_path / "check.db", **{name: value})
    code, lines, _ = await check(env)
    assert code == 2
    assert lines == [f"configuration: FAILED: {name}: Input should be {bound}."]


async def test_chat_services_are_reached_through_their_adapters(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    slack = FakeSlack(SLACK_TOKEN, "xapp-check").start()
    telegram = await FakeTelegram(TELEGRAM_TOKEN).start()
    try:
        env = bot_env(
            lab,
            tmp_path / "check.db",
            MIRROR_ENGINE="registry",
            SLACK_BOT_TOKEN=SLACK_TOKEN,
            SLACK_APP_TOKEN="xapp-check",
            SLACK_API_URL=slack.api_url,
            TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
            TELEGRAM_API_URL=telegram.url,
        )
        code, lines, err = await check(env)
        assert code == 0, lines
        assert lines[2:] == [
            "docker daemon: not used: MIRROR_ENGINE=registry.",
            "slack: ok (bot mirror in workspace Example (socket mode))",
            "telegram: ok (bot @MirrorTestBot (long polling))",
        ], err
        assert [c.method for c in slack.calls] == ["auth.test"]
        assert [c.method for c in telegram.calls] == ["getMe"]

        env.update(SLACK_BOT_TOKEN="xoxb-revoked", TELEGRAM_BOT_TOKEN="654321:revoked")
        code, lines, err = await check(env)
        assert code == 1
        assert lines[3:] == [
            "slack: FAILED: Slack refused SLACK_BOT_TOKEN (invalid_auth); check the bot token.",
            f"telegram: FAILED: The Bot API server at {telegram.url} rejected "
            "TELEGRAM_BOT_TOKEN; check the token from @BotFather.",
        ]
        assert "revoked" not in err
    finally:
        slack.stop()
        await telegram.close()


async def test_an_adapters_wrong_setting_is_its_own_failed_line(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """Each adapter reads and checks its own settings; a wrong one names its variable, and
    ``check`` exits 2 for it, as for any setting."""
    env = bot_env(
        lab,
        tmp_path / "check.db",
        MIRROR_ENGINE="registry",
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        SLACK_PORT="0",
        TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
        TELEGRAM_WEBHOOK_URL="https://bot.example.com/hook",
    )
    code, lines, err = await check(env)
    assert code == 2
    assert lines[3:] == [
        "slack: FAILED: SLACK_PORT: Input should be greater than or equal to 1.",
        "telegram: FAILED: TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not: set "
        "a secret so that only Telegram can post updates to the bot.",
    ], err
    assert SLACK_TOKEN not in err and "Traceback" not in err


@pytest.mark.slow  # a mirror-bot subprocess
@pytest.mark.parametrize("value", [None, "  "])
async def test_a_missing_target_is_a_configuration_error_not_an_ok_configuration(
    tmp_path: Path, value: str | None
) -> None:
    """Without MIRROR_TARGET there is nowhere to copy to: the configuration is wrong (exit 2,
    no "configuration: ok" above it), as a setting out of range is."""
    env = clean_env(tmp_path / "check.db")
    if value is not None:
        env["MIRROR_TARGET"] = value
    code, lines, _ = await check(env)
    assert lines == [
        "configuration: FAILED: MIRROR_TARGET is not set; set it to REGISTRY/NAMESPACE "
        "(e.g. docker.io/yourname)."
    ]
    assert code == 2
