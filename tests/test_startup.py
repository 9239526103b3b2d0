"""Starting ``mirror-bot`` as systemd or ``docker run`` without ``-i`` would: no terminal.

Whatever stops it at start (a bad setting, a ``MIRROR_DB`` that cannot be a database, no chat
and nobody at the console) is one sentence naming the cause and exit 2, from every command,
never a traceback, the usage text, or a process that hangs. Each command runs as a real
subprocess under a timeout, so a hang fails the test instead of the suite. No lab is needed:
every one of these stops before any registry is asked.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.chat import ConfigurationError
from bot.settings import load_settings
from lab import free_port
from tests.support.cli import MIRROR_BOT, clean_env

COMMANDS = {"run": ["run"], "check": ["check"], "mirror": ["mirror", "nginx:1.25"]}


def start(
    tmp_path: Path, command: str, stdin: str = "devnull", **env: str
) -> subprocess.CompletedProcess[str]:
    """``mirror-bot COMMAND`` with stdin /dev/null or closed, in a directory with no .env."""
    argv = [MIRROR_BOT, *COMMANDS[command]]
    if stdin == "closed":
        argv = ["sh", "-c", 'exec "$@" <&-', "sh", *argv]
    return subprocess.run(
        argv,
        env=clean_env(tmp_path / "bot.db", **env),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL if stdin == "devnull" else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_sentence(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The only line the command printed: stdout for ``check``'s report, else stderr."""
    lines = (done.stdout if command == "check" else done.stderr).splitlines()
    assert len(lines) == 1, done
    assert "Traceback" not in done.stdout + done.stderr
    assert "Usage:" not in done.stdout + done.stderr
    return lines[0]


def under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("a regular file")
    return tmp / "file" / "data" / "mirror.db"


def not_a_database(tmp: Path) -> Path:
    (tmp / "noise.db").write_bytes(b"this is not SQLite\n" * 400)
    return tmp / "noise.db"


@pytest.mark.slow  # mirror-bot subprocesses
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (
            under_a_file,
            "MIRROR_DB: cannot create the directory `{tmp}/file/data` for the database (Not a "
            "directory); point MIRROR_DB at a writable place.",
        ),
        (
            not_a_database,
            "MIRROR_DB: `{tmp}/noise.db` is not a SQLite database; point MIRROR_DB at this "
            "bot's database or at a new file.",
        ),
    ],
)
def test_an_unusable_database_is_one_sentence_and_exit_2(
    tmp_path: Path, command: str, make: Callable[[Path], Path], sentence: str
) -> None:
    db = make(tmp_path)
    done = start(tmp_path, command, MIRROR_DB=str(db), MIRROR_TARGET="127.0.0.1:5999/m")
    line = one_sentence(done, command)
    expected = sentence.format(tmp=tmp_path)
    assert line == (f"configuration: FAILED: {expected}" if command == "check" else expected)
    assert done.returncode == 2


@pytest.mark.slow  # mirror-bot subprocesses
@pytest.mark.parametrize("command", COMMANDS)
def test_postgres_out_of_reach_is_one_sentence_and_exit_2(tmp_path: Path, command: str) -> None:
    port = free_port()  # nobody listens there
    url = f"postgresql://mirror:pw-not-shown@127.0.0.1:{port}/mirror"
    done = start(tmp_path, command, MIRROR_DB=url, MIRROR_TARGET="127.0.0.1:5999/m")
    expected = (
        f"MIRROR_DB: cannot connect to PostgreSQL at 127.0.0.1:{port}/mirror (Connection "
        "refused); start it or point MIRROR_DB at a server this bot can reach."
    )
    line = one_sentence(done, command)
    assert line == (f"configuration: FAILED: {expected}" if command == "check" else expected)
    assert "pw-not-shown" not in done.stdout + done.stderr
    assert done.returncode == 2


@pytest.mark.slow  # mirror-bot subprocesses
@pytest.mark.parametrize("stdin", ["devnull", "closed"])
def test_run_with_no_chat_and_no_terminal_stops_with_one_sentence(
    tmp_path: Path, stdin: str
) -> None:
    done = start(tmp_path, "run", stdin)
    what = "closed" if stdin == "closed" else "not a terminal but /dev/null"
    assert one_sentence(done, "run") == (
        f"No chat adapter is configured and standard input is {what}, so nobody could talk "
        "to the bot: set a chat adapter's token, or run it with a terminal (docker run -it)."
    )
    assert done.returncode == 2


@pytest.mark.slow  # mirror-bot subprocesses
def test_commands_from_a_file_are_answered_and_the_bot_stops_at_their_end(
    tmp_path: Path,
) -> None:
    commands = tmp_path / "commands.txt"
    commands.write_text("/status\n/cancel abc123\n")
    with commands.open() as stdin:
        done = subprocess.run(
            [MIRROR_BOT, "run"],
            env=clean_env(tmp_path / "bot.db"),
            cwd=tmp_path,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert "No jobs in this chat yet" in done.stdout
    assert "Job `abc123` is not running." in done.stdout
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # mirror-bot subprocesses
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_setting_is_one_sentence_naming_it_and_exit_2(tmp_path: Path, command: str) -> None:
    done = start(tmp_path, command, MIRROR_DEFAULT_PLATFORM="plan9")
    sentence = (
        "MIRROR_DEFAULT_PLATFORM: `plan9` is not a platform: use os/arch[/variant] such as "
        "linux/arm64, or all."
    )
    line = one_sentence(done, command)
    assert line == (f"configuration: FAILED: {sentence}" if command == "check" else sentence)
    assert done.returncode == 2


@pytest.mark.slow  # mirror-bot subprocesses
def test_check_refuses_an_allowed_user_without_a_platform(tmp_path: Path) -> None:
    done = start(tmp_path, "check", MIRROR_ALLOWED_USERS="slack:U1 bob")
    assert one_sentence(done, "check").startswith(
        "configuration: FAILED: MIRROR_ALLOWED_USERS: `bob` needs a platform prefix, "
        "written PLATFORM:ID (installed platforms: "
    )
    assert done.returncode == 2


# -- every setting, validated in-process ---------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No bot setting from this process and no .env file: only what a test sets."""
    for name in list(os.environ):
        if name.startswith(("MIRROR_", "SLACK_", "TELEGRAM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MIRROR_DB", str(tmp_path / "bot.db"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


BAD = [
    (
        "MIRROR_DEFAULT_PLATFORM",
        "linux",
        "MIRROR_DEFAULT_PLATFORM: `linux` is not a platform: use os/arch[/variant] such as "
        "linux/arm64, or all.",
    ),
    ("MIRROR_ALLOWED_USERS", "bob", "MIRROR_ALLOWED_USERS: `bob` needs a platform prefix"),
    ("MIRROR_ALLOWED_USERS", "slack:", "MIRROR_ALLOWED_USERS: `slack:` needs a platform prefix"),
    ("MIRROR_ADMINS", "telegram:1 :U1", "MIRROR_ADMINS: `:U1` needs a platform prefix"),
    ("MIRROR_ADMINS", "1:2", "MIRROR_ADMINS: `1:2` needs a platform prefix"),
    (
        "MIRROR_TARGET",
        "https://harbor.example.com/team",
        "MIRROR_TARGET: `https://harbor.example.com/team` is not a valid mirror target: leave "
        "out the URL scheme, as in `harbor.example.com/team`.",
    ),
    (
        "MIRROR_TARGET",
        "docker.io",
        "MIRROR_TARGET: `docker.io` is not a valid mirror target: Docker Hub needs a namespace",
    ),
    (
        "MIRROR_ALLOWED_SOURCES",
        "quay.io https://ghcr.io",
        "MIRROR_ALLOWED_SOURCES: `https://ghcr.io` is not a registry host; write it as quay.io, "
        "registry.example.com:5000 or *.example.com (no scheme or path).",
    ),
    (
        "MIRROR_ALLOWED_SOURCES",
        "quay.io/prometheus",
        "MIRROR_ALLOWED_SOURCES: `quay.io/prometheus` is not a registry host",
    ),
    (
        "MIRROR_INSECURE_REGISTRIES",
        "*.lan",
        "MIRROR_INSECURE_REGISTRIES: `*.lan` is not a registry host; write it as host or "
        "host:port (no scheme or path).",
    ),
    (
        "MIRROR_CONCURRENCY",
        "0",
        "MIRROR_CONCURRENCY: Input should be greater than or equal to 1.",
    ),
    ("MIRROR_MAX_IMAGES", "many", "MIRROR_MAX_IMAGES: Input should be a valid integer"),
    ("MIRROR_ENGINE", "podman", "MIRROR_ENGINE: Input should be 'auto', 'docker' or 'registry'."),
    ("MIRROR_CONFIRM_BYTES", "big", "MIRROR_CONFIRM_BYTES: write it as a size, e.g. 2GB"),
    ("MIRROR_MAX_IMAGE_BYTES", "2 lorries", "MIRROR_MAX_IMAGE_BYTES: write it as a size"),
    ("MIRROR_USER_RATE", "lots", "MIRROR_USER_RATE: write it as COUNT/PERIOD, e.g. 20/hour"),
    ("MIRROR_METRICS_PORT", "70000", "MIRROR_METRICS_PORT: Input should be less than or equal"),
    ("MIRROR_LOG_FORMAT", "xml", "MIRROR_LOG_FORMAT: Input should be 'text' or 'json'."),
    ("MIRROR_CERTS_DIR", "/no/certs.d", "MIRROR_CERTS_DIR: `/no/certs.d` does not exist."),
    ("MIRROR_CERTS_DIR", "/etc/hostname", "MIRROR_CERTS_DIR: `/etc/hostname` is not a directory."),
]


@pytest.mark.parametrize(
    ("variable", "value", "sentence"), BAD, ids=[b[0] + "=" + b[1] for b in BAD]
)
def test_every_bad_setting_is_one_sentence_naming_its_variable(
    environment: pytest.MonkeyPatch, variable: str, value: str, sentence: str
) -> None:
    environment.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(sentence)
    assert message.endswith(".") and "\n" not in message


@pytest.mark.parametrize(
    ("value", "size"),
    [("2GB", 2 * 10**9), ("500MiB", 500 << 20), ("3.2 gb", 3_200_000_000), ("123", 123),
     ("1k", 1000), ("", None), ("off", None), ("0", None)],
)  # fmt: skip
def test_sizes_are_read_as_people_write_them(
    environment: pytest.MonkeyPatch, value: str, size: int | None
) -> None:
    environment.setenv("MIRROR_CONFIRM_BYTES", value)
    environment.setenv("MIRROR_MAX_IMAGE_BYTES", value)
    settings = load_settings()
    assert settings.mirror_confirm_bytes == size == settings.mirror_max_image_bytes


def test_good_settings_are_read_in_their_canonical_form(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("MIRROR_ALLOWED_USERS", "Slack:U1, telegram:-100123")
    environment.setenv("MIRROR_DEFAULT_PLATFORM", "linux/aarch64")
    environment.setenv("MIRROR_ALLOWED_SOURCES", "Quay.io *.example.com 10.0.0.5:5000")
    environment.setenv("MIRROR_TARGET", " harbor.example.com/team/ ")
    settings = load_settings()
    assert settings.mirror_allowed_users == ("slack:U1", "telegram:-100123")
    assert settings.mirror_default_platform == "linux/arm64"
    assert settings.mirror_allowed_sources == ("quay.io", "*.example.com", "10.0.0.5:5000")
    assert settings.mirror_target == "harbor.example.com/team/"
    environment.setenv("MIRROR_DEFAULT_PLATFORM", "ALL")
    assert load_settings().mirror_default_platform == "all"


@pytest.mark.slow  # a mirror-bot subprocess
def test_a_console_whose_reader_went_away_stops_instead_of_retrying(tmp_path: Path) -> None:
    """``mirror-bot run | head -1``: once the pipe closes, nothing can be delivered, so the
    commands still coming end at once and the bot stops at end of input, not 15 minutes later."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the bot writes its first line
    try:
        done = subprocess.run(
            [MIRROR_BOT, "run"],
            env=clean_env(tmp_path / "bot.db"),
            cwd=tmp_path,
            input="/help\n/status\n/help\n",
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "retrying" not in done.stderr
    assert "Traceback" not in done.stderr
