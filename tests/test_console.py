"""The console bot driven as a user would: a terminal (pty), typed commands, read screens."""

from __future__ import annotations

import io
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

import lab as lab_module
from adapters.console import _Screen
from mirror.store import STORE_DOWN
from tests.support.cli import MIRROR_BOT, bot_env, clean_env
from tests.support.throttle import throttled

PROMPT = "mirror> "


def start(env: dict[str, str]) -> pexpect.spawn:
    child = pexpect.spawn(MIRROR_BOT, ["run"], env=env, encoding="utf-8", timeout=60)
    child.expect_exact(PROMPT)
    return child


@pytest.fixture
def env(lab: lab_module.Lab, tmp_path: Path) -> dict[str, str]:
    return bot_env(lab, tmp_path / "console.db")


@pytest.fixture
def console(env: dict[str, str]) -> Iterator[pexpect.spawn]:
    child = start(env)
    try:
        yield child
    finally:
        child.close(force=True)


def test_mirror_shows_progress_and_the_commands_to_paste(
    lab: lab_module.Lab, console: pexpect.spawn
) -> None:
    console.sendline(f"/mirror {lab.source}/library/multi:1.0")
    console.expect(r"Job (\w{6}): mirroring 1 image")
    job_id = console.match.group(1)
    console.expect("queued|resolving|copying")
    console.expect(rf"Job {job_id} done: 1 image ready")
    console.expect_exact(PROMPT)
    answer = console.before
    target = f"{lab.target}/mirror/{lab.source.replace(':', '-')}.library.multi:1.0"
    assert f"docker pull {target} && docker tag {target} {lab.source}/library/multi:1.0" in answer
    assert f"ctr -n k8s.io images pull --plain-http {target}" in answer

    console.sendline("/status")
    console.expect("Latest jobs in this chat")
    console.expect(rf"{job_id}: done")
    console.sendline(f"/status {job_id}")
    console.expect(rf"Job {job_id} done: 1 image ready")
    console.sendline("/history")
    console.expect("Mirrored from this chat")
    console.expect_exact(target)


def test_help_unknown_command_and_bad_reference(console: pexpect.spawn) -> None:
    console.sendline("/help")
    console.expect_exact("/mirror IMAGE [IMAGE ...] [--platform os/arch|all]")
    console.expect_exact("/cancel JOB")
    console.sendline("/frobnicate now")
    console.expect_exact("`/frobnicate` is not a command I know.")
    console.expect_exact("Usage: /mirror IMAGE")
    console.sendline("/mirror Nginx:1.25")
    console.expect_exact("`Nginx:1.25` is not a valid image reference")
    console.sendline("/mirror evil.example.com/x:1")
    console.expect_exact("`evil.example.com` is not an allowed source registry")
    console.sendline("/cancel nosuch")
    console.expect_exact("Job `nosuch` is not running.")


def test_daemon_down_is_explained_and_the_bot_keeps_answering(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    no_daemon = {"DOCKER_HOST": "unix:///tmp/no-such-dockerd.sock"}
    child = start(env | no_daemon | {"MIRROR_ENGINE": "docker"})
    try:
        child.sendline(f"/mirror {lab.source}/library/hello:1.0")
        child.expect("nothing was mirrored")  # the answer: its title, then why
        child.expect_exact(
            "The Docker daemon at `unix:///tmp/no-such-dockerd.sock` does not answer."
        )
        child.sendline("/help")
        child.expect_exact("/history")
        assert "Traceback" not in (child.before or "")
    finally:
        child.close(force=True)
    # With the default engine choice and a daemon elsewhere named as the way out, the
    # registry engine steps in when that daemon does not answer.
    child = start(env | {"DOCKER_HOST": "tcp://no-such-daemon.invalid:2375"})
    try:
        child.sendline(f"/mirror {lab.source}/library/hello:1.0")
        child.expect(r"Job \w{6} done: 1 image ready")
        child.expect_exact("registry engine")
        child.expect_exact("digest identical to the source")
    finally:
        child.close(force=True)


def start_slow_copy(env: dict[str, str], source: str) -> tuple[pexpect.spawn, str]:
    """A console bot in the middle of copying ``source``'s multi-layer image; and the job id."""
    child = start(env | {"MIRROR_ALLOWED_SOURCES": source})
    child.sendline(f"/mirror {source}/library/multi:1.0")
    child.expect(r"Job (\w{6}): mirroring 1 image")
    job_id = str(child.match.group(1))
    child.expect("copying")
    return child, job_id


def test_a_job_killed_mid_copy_is_resumed_after_a_restart(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    with throttled(lab.source, rate=1024 * 1024) as slow:
        env = env | {"MIRROR_ALLOWED_SOURCES": slow.address, "MIRROR_ENGINE": "docker"}
        first, job_id = start_slow_copy(env, slow.address)
        try:
            first.kill(signal.SIGKILL)
            first.wait()
        finally:
            first.close(force=True)

        second = pexpect.spawn(MIRROR_BOT, ["run"], env=env, encoding="utf-8", timeout=90)
        try:
            second.expect(rf"Job {job_id} done: 1 image ready")
            second.expect_exact(PROMPT)
            assert re.search(r"docker pull \S+multi:1\.0", second.before or "")
            second.sendline(f"/status {job_id}")
            second.expect(rf"Job {job_id} done")
        finally:
            second.close(force=True)


def test_per_user_rate_is_enforced(lab: lab_module.Lab, env: dict[str, str]) -> None:
    child = start(env | {"MIRROR_USER_RATE": "1/hour"})
    try:
        child.sendline(f"/mirror {lab.source}/library/hello:1.0")
        child.expect(r"Job \w{6} done: 1 image ready")
        child.sendline(f"/mirror {lab.source}/library/multi:1.0")
        child.expect_exact("You may mirror 1 per hour and have 0 left right now")
    finally:
        child.close(force=True)


def test_sigterm_stops_cleanly_and_the_job_resumes_later(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    with throttled(lab.source, rate=1024 * 1024) as slow:
        env = env | {"MIRROR_ALLOWED_SOURCES": slow.address, "MIRROR_ENGINE": "docker"}
        first, job_id = start_slow_copy(env, slow.address)
        try:
            first.kill(signal.SIGTERM)
            first.expect(pexpect.EOF, timeout=20)
            first.close()
            assert first.exitstatus == 0
            assert "Traceback" not in (first.before or "")
        finally:
            first.close(force=True)

        second = pexpect.spawn(MIRROR_BOT, ["run"], env=env, encoding="utf-8", timeout=90)
        try:
            second.expect(rf"Job {job_id} done: 1 image ready")
        finally:
            second.close(force=True)


@pytest.mark.slow  # a mirror-bot process waiting out the busy timeout
def test_a_locked_database_gets_one_sentence_and_no_acknowledgement(tmp_path: Path) -> None:
    """The job cannot be stored, so nobody is told it exists and nothing is left running."""
    env = clean_env(tmp_path / "locked.db", MIRROR_TARGET="127.0.0.1:5999/mirror")
    child = start(env)
    child.logfile_read = transcript = io.StringIO()
    holder = sqlite3.connect(env["MIRROR_DB"], isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        child.sendline("/mirror nginx:1.25")
        child.expect_exact(STORE_DOWN, timeout=30)
        child.expect_exact(PROMPT)
        holder.execute("ROLLBACK")
        child.sendline("/status")
        child.expect("No jobs in this chat yet")
        child.sendeof()  # end of input: the bot stops at once, as nothing runs
        child.expect(pexpect.EOF, timeout=20)
        child.close()
        assert child.exitstatus == 0
        screen = transcript.getvalue()
        assert screen.count(STORE_DOWN) == 1
        assert "mirroring" not in screen and "Traceback" not in screen
    finally:
        holder.close()
        child.close(force=True)


def test_no_secret_reaches_the_screen_the_log_or_the_database(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    secret = "s3cr3t-" + "x" * 12
    env = env | {
        "MIRROR_TARGET": f"{lab.auth}/team",
        "MIRROR_TARGET_USERNAME": lab.auth_user,
        "MIRROR_TARGET_PASSWORD": secret,
    }
    child = start(env)
    try:
        child.sendline(f"/mirror {lab.source}/library/hello:1.0")
        child.expect("nothing was mirrored")
        child.expect_exact("refused the push")
        child.expect_exact(PROMPT)
        child.sendline("/status")
        child.expect("Latest jobs")
        child.sendeof()
        child.expect(pexpect.EOF)
        screen = child.before or ""
    finally:
        child.close(force=True)
    assert secret not in screen
    db = Path(env["MIRROR_DB"])
    for path in db.parent.glob(db.name + "*"):
        assert secret.encode() not in path.read_bytes()


def test_the_daemon_going_away_mid_copy_is_a_clear_failure(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    with (
        throttled(lab.source, rate=1024 * 1024) as slow_source,
        throttled(lab.docker_host, rate=None) as daemon,
    ):
        docker_host = f"tcp://{daemon.address}"
        child = start(
            env
            | {
                "DOCKER_HOST": docker_host,
                "MIRROR_ENGINE": "docker",
                "MIRROR_ALLOWED_SOURCES": f"{slow_source.address},{lab.source}",
            }
        )
        try:
            child.sendline(f"/mirror {slow_source.address}/library/multi:1.0")
            child.expect("copying")
            daemon.cut()
            child.expect("nothing was mirrored")  # the answer: its title, then why
            child.expect_exact(f"The Docker daemon at `{docker_host}` does not answer.")
            child.sendline("/help")
            child.expect_exact("/history")
            assert "Traceback" not in (child.before or "")
        finally:
            child.close(force=True)


def test_the_console_prints_the_command_each_button_stands_for(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    """No buttons at a terminal: "Copy 6.3 MB" is `/confirm JOB 1` to type, which copies the
    image that waited; a /tags answer names `/mirror IMAGE:TAG` per newest tag."""
    child = start(env | {"MIRROR_CONFIRM_BYTES": "5MB"})
    try:
        child.sendline(f"/mirror {lab.source}/library/multi:1.0")
        child.expect(r"Job (\w{6}): mirroring 1 image")
        job_id = child.match.group(1)
        child.expect_exact("This image is 6.3 MB.")
        child.expect_exact(f"[Copy 6.3 MB] type: /confirm {job_id} 1")
        child.expect_exact(f"[Cancel] type: /cancel {job_id}")
        child.sendline(f"/confirm {job_id}")
        child.expect_exact(f"Job {job_id}: copying `{lab.source}/library/multi:1.0` (6.3 MB).")
        child.expect(rf"Job {job_id} done: 1 image ready")

        child.sendline(f"/tags {lab.source}/library/app 1.2")
        child.expect_exact(f"[Mirror 1.2.4] type: /mirror {lab.source}/library/app:1.2.4")
    finally:
        child.close(force=True)


# -- one clean answer per job -----------------------------------------------------------------


def test_each_job_ends_in_one_block(lab: lab_module.Lab, env: dict[str, str]) -> None:
    """On a pipe every state is printed, and a job's end once: its answer, not a last view
    of its live message and then the answer with the same rows."""
    done = subprocess.run(
        [MIRROR_BOT, "run"],
        input=f"/mirror {lab.source}/library/hello:1.0\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"Job (\w{6}): mirroring 1 image", done.stdout)
    assert found, done.stdout + done.stderr
    job = found.group(1)
    assert done.stdout.count(f"Job {job} done: 1 image ready") == 1, done.stdout
    assert f"Job {job}: done" not in done.stdout, done.stdout
    assert done.stdout.count("docker pull ") == 1


class Terminal(io.StringIO):
    """What the console writes to a terminal (it redraws only there)."""

    def isatty(self) -> bool:
        return True


def test_a_redraw_goes_up_as_many_rows_as_the_block_took_wrapped_lines_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = Terminal()
    screen = _Screen(out)
    screen.show(1, "Job abc123: mirroring 1 image\n- " + "x" * 100, replace=False)
    out.truncate(0)
    out.seek(0)
    screen.show(1, "Job abc123: done", replace=True)
    # 1 row for the title, 3 for the 102 columns of the row: a redraw from 2 rows up would
    # start inside the old block and leave its top on the screen
    assert out.getvalue().startswith("\r\x1b[4A\x1b[J"), repr(out.getvalue())


def test_progress_of_a_message_no_longer_at_the_bottom_is_not_reprinted_but_its_end_is() -> None:
    out = Terminal()
    screen = _Screen(out)
    screen.show(1, "Job abc123: mirroring 1 image", replace=False)
    screen.typed()  # `/help` typed at the prompt
    screen.show(2, "hub-mirror-bot copies images ...", replace=False)
    before = out.getvalue()
    screen.show(1, "Job abc123: copying 45%", replace=True, working=True)
    assert out.getvalue() == before  # not drawn again below the help
    screen.show(1, "Job abc123 done: 1 image ready", replace=True)
    assert out.getvalue()[len(before) :].startswith("\r\x1b[KJob abc123 done: 1 image ready")
    screen.typed()
    screen.show(1, "Job abc123 done: 1 image ready (again)", replace=True)
    assert "A\x1b[J" not in out.getvalue()  # never a redraw over what was typed below
