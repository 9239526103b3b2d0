"""A chat platform is one module and one entry point: proved with a throwaway distribution.

The test writes an adapter the project has never seen (``filechat``: commands in a file,
answers out as JSON lines) as a real installed distribution, a module beside a ``*.dist-info``
with ``entry_points.txt``, and puts it on the ``PYTHONPATH`` of ``mirror-bot run`` and
``mirror-bot check`` subprocesses. ``importlib.metadata`` finds it as it finds any plugin;
nothing in ``bot/`` changes. Its settings come from its own ``FILECHAT_`` prefix, its secret
is kept out of the logs, and its check is a line of ``mirror-bot check``.

A platform whose SDK is a pip extra (``sdkchat``) is proved the same way: configured without
the SDK, ``run`` and ``check`` stop with the ``pip install`` to run; with it on the path, the
same settings work.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.chat import ChatAdapter, ConfigurationError
from bot.check import check_adapter, check_adapters
from bot.plugins import AdapterSettings, Extra, SettingsPlugin, configured_adapters, installed
from tests.support.cli import MIRROR_BOT

TOKEN = "filechat-secret-token-4711"

ADAPTER = '''
"""filechat: a chat whose messages are lines in files."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.chat import ConfigurationError, Conversation, Handler, Incoming, Reply
from bot.plugins import AdapterSettings, SettingsPlugin
from bot.view import MessageView, to_plain_text

log = logging.getLogger("filechat")


@dataclass
class Outbox:
    path: Path
    ids: itertools.count[int]

    def write(self, **event: object) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(event) + "\\n")


@dataclass
class FileReply:
    outbox: Outbox
    chat: str
    id: int

    @property
    def ref(self) -> str:
        return f"{self.chat}/{self.id}"

    async def edit(self, view: MessageView) -> None:
        self.outbox.write(op="edit", chat=self.chat, id=self.id, text=to_plain_text(view))


@dataclass
class FileConversation:
    outbox: Outbox
    chat: str

    @property
    def edit_interval(self) -> float:
        return 0.1

    async def post(self, view: MessageView) -> Reply:
        reply = FileReply(self.outbox, self.chat, next(self.outbox.ids))
        self.outbox.write(op="post", chat=self.chat, id=reply.id, text=to_plain_text(view))
        return reply


class FileChat:
    name = "filechat"

    def __init__(self, inbox: Path, outbox: Path, token: str) -> None:
        self._inbox = inbox
        self._outbox = Outbox(outbox, itertools.count(1))
        self._token = token

    async def serve(self, handler: Handler) -> None:
        """Every line of the inbox is ``USER CHAT TEXT``; done when all are answered."""
        log.info("filechat: signed in with token %s", self._token)
        work = []
        for line in self._inbox.read_text().splitlines():
            user, chat, text = line.split(" ", 2)
            incoming = Incoming("filechat", user, user, chat, text)
            work.append(handler(incoming, FileConversation(self._outbox, chat)))
        await asyncio.gather(*work)

    async def reopen(self, ref: str) -> tuple[Conversation, Reply] | None:
        return None


class FileChatSettings(AdapterSettings, env_prefix="FILECHAT_"):
    inbox: Path | None = None
    outbox: Path | None = None
    token: SecretStr = SecretStr("")
    slow_ms: int = 0

    @property
    def configured(self) -> bool:
        return self.inbox is not None

    def build(self) -> FileChat:
        if self.inbox is None or self.outbox is None:
            raise ConfigurationError("FILECHAT_OUTBOX is not set; name a file for the answers.")
        return FileChat(self.inbox, self.outbox, self.token.get_secret_value())

    async def check(self) -> str:
        if not self.inbox or not self.inbox.exists():
            raise ConfigurationError(f"FILECHAT_INBOX names no file ({self.inbox}).")
        return f"reading {self.inbox.name}"


plugin = SettingsPlugin(FileChatSettings)
'''


@pytest.fixture
def distribution(tmp_path: Path) -> Path:
    """A site directory holding ``filechat`` 0.1 as pip would have installed it."""
    site = tmp_path / "site"
    info = site / "filechat-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "filechat.py").write_text(ADAPTER)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: filechat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hub_mirror_bot.adapters]\nfilechat = filechat:plugin\n"
    )
    return site


def environment(site: Path, tmp_path: Path, **settings: str) -> dict[str, str]:
    """No chat but the throwaway one; no registry is needed for these commands."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_", "FILECHAT_"))
    }
    return env | {
        "PYTHONPATH": str(site),
        "MIRROR_DB": str(tmp_path / "mirror.db"),
        "MIRROR_ALLOWED_USERS": "filechat:alice",
        "MIRROR_TARGET": "127.0.0.1:9/mirror",  # never reached: policy refuses first
        **settings,
    }


def bot(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRROR_BOT, command],
        env=env,
        cwd=cwd,  # no stray .env file
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def answers(outbox: Path) -> dict[str, list[dict[str, Any]]]:
    by_chat: dict[str, list[dict[str, Any]]] = {}
    for line in outbox.read_text().splitlines():
        event = json.loads(line)
        by_chat.setdefault(event["chat"], []).append(event)
    return by_chat


@pytest.mark.slow  # mirror-bot subprocesses
def test_an_adapter_installed_from_elsewhere_serves_the_bot(
    distribution: Path, tmp_path: Path
) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.write_text(
        textwrap.dedent(
            """\
            alice help /help
            alice status /status
            bob denied /status
            alice policy /mirror registry.example.com/tool:1.0
            """
        )
    )
    env = environment(
        distribution,
        tmp_path,
        FILECHAT_INBOX=str(inbox),
        FILECHAT_OUTBOX=str(outbox),
        FILECHAT_TOKEN=TOKEN,
    )
    done = bot("run", env, tmp_path)

    assert done.returncode == 0, done.stderr
    chats = answers(outbox)
    assert [event["op"] for events in chats.values() for event in events] == ["post"] * 4
    [help_], [status], [denied], [policy] = (
        chats[c] for c in ("help", "status", "denied", "policy")
    )
    assert "/mirror IMAGE [IMAGE ...]" in help_["text"]
    assert "No jobs in this chat yet" in status["text"]
    # The platform's name is its entry point's: the allowlist and the answer speak it.
    assert "ask an admin to add `filechat:bob`" in denied["text"]
    assert "`registry.example.com` is not an allowed source registry" in policy["text"]
    # The adapter's secret is redacted by the bot's logging, and no console ran.
    assert "filechat: signed in with token ***" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "console" not in done.stdout


@pytest.mark.slow  # mirror-bot subprocesses
def test_its_settings_errors_stop_the_start_with_one_sentence(
    distribution: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_text("alice help /help\n")
    missing = bot("run", environment(distribution, tmp_path, FILECHAT_INBOX=str(inbox)), tmp_path)
    wrong = bot(
        "run",
        environment(distribution, tmp_path, FILECHAT_INBOX=str(inbox), FILECHAT_SLOW_MS="soon"),
        tmp_path,
    )
    assert missing.returncode == 2
    assert "FILECHAT_OUTBOX is not set; name a file for the answers." in missing.stderr
    assert wrong.returncode == 2
    assert "FILECHAT_SLOW_MS: Input should be a valid integer" in (wrong.stderr)
    for done in (missing, wrong):
        assert "Traceback" not in done.stderr


@pytest.mark.slow  # mirror-bot subprocesses
def test_its_check_is_a_line_of_mirror_bot_check(distribution: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    env = environment(
        distribution, tmp_path, FILECHAT_INBOX=str(inbox), FILECHAT_OUTBOX=str(tmp_path / "o")
    )
    absent = bot("check", env, tmp_path)
    inbox.write_text("")
    present = bot("check", env, tmp_path)
    assert (
        absent.stdout.splitlines()[-1]
        == f"filechat: FAILED: FILECHAT_INBOX names no file ({inbox})."
    )
    assert present.stdout.splitlines()[-1] == "filechat: ok (reading inbox)"
    unset = bot("check", environment(distribution, tmp_path), tmp_path)
    assert "filechat" not in unset.stdout


@pytest.mark.slow  # mirror-bot subprocesses
def test_an_entry_point_that_is_no_plugin_is_one_sentence(
    distribution: Path, tmp_path: Path
) -> None:
    """An adapter written for the old contract (the entry point names its class) is refused."""
    points = distribution / "filechat-0.1.dist-info" / "entry_points.txt"
    points.write_text("[hub_mirror_bot.adapters]\nfilechat = filechat:FileChat\n")
    done = bot("run", environment(distribution, tmp_path), tmp_path)
    assert done.returncode == 2
    assert (
        "The chat adapter 'filechat' (filechat:FileChat) is not an adapter plugin: it has no "
        "`fallback` and `configure()`." in done.stderr
    )
    assert "Traceback" not in done.stderr


# -- a platform whose SDK comes as an extra ------------------------------------------------------

SDK = "sdkchat_sdk_4711"
"""A module no environment has, until a test writes it where pip would have put it."""

MISSING_SDK = (
    f"SDKCHAT_TOKEN is set, but the chat SDK it needs ({SDK}) is not installed: "
    "run pip install 'hub-mirror-bot[sdkchat]'."
)


class SdkChatSettings(AdapterSettings, env_prefix="SDKCHAT_"):
    token: SecretStr | None = None
    port: int = 443

    @property
    def configured(self) -> bool:
        return self.token is not None

    def build(self) -> ChatAdapter:
        raise AssertionError("never built here")


@pytest.fixture
def sdkchat_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in list(os.environ):
        if name.startswith("SDKCHAT_"):
            monkeypatch.delenv(name)
    return monkeypatch


async def test_an_adapter_configured_without_its_extra_names_the_pip_install(
    sdkchat_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plugin = SettingsPlugin(SdkChatSettings, extra=Extra("sdkchat", (SDK,)))
    plugins = {"sdkchat": plugin}
    assert configured_adapters(plugins=plugins) == []  # not asked for: nothing to install
    sdkchat_env.setenv("SDKCHAT_PORT", "8443")
    assert configured_adapters(plugins=plugins) == []
    sdkchat_env.setenv("SDKCHAT_TOKEN", "t0ken")  # the variable that asks for the platform

    with pytest.raises(ConfigurationError) as caught:
        configured_adapters(plugins=plugins)
    assert str(caught.value) == MISSING_SDK
    checked = await check_adapter("sdkchat", plugin)
    assert checked is not None and checked.misconfigured  # `check` exits 2, as `run` does
    assert checked.line() == f"sdkchat: FAILED: {MISSING_SDK}"

    (tmp_path / f"{SDK}.py").write_text("")  # the extra installed: the same settings run
    sdkchat_env.syspath_prepend(str(tmp_path))
    [configured] = configured_adapters(plugins=plugins)
    assert configured.name == "sdkchat"
    assert isinstance(configured.setup, SdkChatSettings)


def test_the_distribution_of_an_extra_is_the_adapters_own() -> None:
    extra = Extra("sdk", ("json", SDK), distribution="sdkchat-adapter")
    assert extra.missing() == [SDK]
    with pytest.raises(ConfigurationError, match=r"run pip install 'sdkchat-adapter\[sdk\]'\.$"):
        extra.require("SDKCHAT_TOKEN")
    Extra("sdk", ("json",)).require("SDKCHAT_TOKEN")  # all there: nothing to say


SDK_ADAPTER = f'''
"""sdkchat: a chat whose SDK is an extra; this module loads without it."""

from pydantic import SecretStr

from bot.chat import ChatAdapter
from bot.plugins import AdapterSettings, Extra, SettingsPlugin


class SdkChatSettings(AdapterSettings, env_prefix="SDKCHAT_"):
    token: SecretStr | None = None

    def build(self) -> ChatAdapter:
        raise NotImplementedError

    async def check(self) -> str:
        import {SDK}  # the SDK, only once the adapter is asked for

        return {SDK}.WHO


plugin = SettingsPlugin(SdkChatSettings, extra=Extra("sdkchat", ("{SDK}",)))
'''


@pytest.mark.slow  # mirror-bot subprocesses
def test_run_and_check_stop_with_the_pip_install_when_the_extra_is_missing(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    info = site / "sdkchat-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "sdkchat.py").write_text(SDK_ADAPTER)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sdkchat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hub_mirror_bot.adapters]\nsdkchat = sdkchat:plugin\n")
    env = environment(site, tmp_path, SDKCHAT_TOKEN="t0ken")

    ran, checked = bot("run", env, tmp_path), bot("check", env, tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == MISSING_SDK
    assert checked.returncode == 2
    assert checked.stdout.splitlines()[-1] == f"sdkchat: FAILED: {MISSING_SDK}"
    for done in (ran, checked):
        assert "Traceback" not in done.stdout + done.stderr

    extra = tmp_path / "extra"  # `pip install --target`, as it were
    extra.mkdir()
    (extra / f"{SDK}.py").write_text('WHO = "signed in as sdkchat-bot"\n')
    env["PYTHONPATH"] = os.pathsep.join((str(site), str(extra)))
    installed_check = bot("check", env, tmp_path)
    assert installed_check.stdout.splitlines()[-1] == "sdkchat: ok (signed in as sdkchat-bot)"


async def test_an_entry_point_whose_module_cannot_be_imported_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A third-party adapter that imports a missing SDK at its top cannot even be loaded."""
    info = tmp_path / "brokenchat-0.1.dist-info"
    info.mkdir()
    (tmp_path / "brokenchat.py").write_text(f"import {SDK}\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenchat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hub_mirror_bot.adapters]\nbrokenchat = brokenchat:plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sentence = (
        f"The chat adapter 'brokenchat' (brokenchat:plugin) cannot be loaded: No module named "
        f"'{SDK}'"
    )
    with pytest.raises(ConfigurationError) as caught:
        installed()
    assert str(caught.value) == sentence
    assert await check_adapters() == []  # nothing asks for it: its module is never loaded
    monkeypatch.setenv("BROKENCHAT_TOKEN", "t")  # its prefix: now it is asked for
    [result] = await check_adapters()
    assert result.line() == f"chat adapters: FAILED: {sentence}"


def test_only_the_asked_platforms_are_imported(tmp_path: Path) -> None:
    """A bot configured for Telegram alone reads and builds Telegram's adapter and imports no
    other platform's module or SDK (a variable of another prefix would ask for that one)."""
    from tests.support.cli import clean_env

    probe = textwrap.dedent(
        """
        import json, sys
        from bot.plugins import configured_adapters
        chosen = [entry.name for entry in configured_adapters()]
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in (
            "adapters", "slack_bolt", "slack_sdk", "telegram", "lark_oapi", "dingtalk_stream"))
        print(json.dumps({"chosen": chosen, "loaded": loaded}))
        """
    )
    env = clean_env(tmp_path / "m.db", TELEGRAM_BOT_TOKEN="123:abc")
    found = subprocess.run(
        [str(Path(MIRROR_BOT).parent / "python"), "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(found.stdout)
    assert seen["chosen"] == ["telegram"]
    roots = {name.split(".")[0] for name in seen["loaded"]}
    assert "telegram" in roots
    assert not roots & {"slack_bolt", "slack_sdk", "lark_oapi", "dingtalk_stream"}
    assert not {"adapters.slack", "adapters.console", "adapters.feishu"} & set(seen["loaded"])

    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-1\nSLACK_APP_TOKEN=xapp-1\n")
    env.pop("TELEGRAM_BOT_TOKEN")
    found = subprocess.run(
        [str(Path(MIRROR_BOT).parent / "python"), "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(found.stdout)
    assert seen["chosen"] == ["slack"]  # asked for in .env alone
    assert "adapters.telegram" not in seen["loaded"]
