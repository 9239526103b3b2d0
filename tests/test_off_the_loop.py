"""Nothing slow runs on the event loop's thread (issue 23): while a ``docker-credential-*``
helper takes its time (ecr-login, gcloud and pass can take seconds), every chat keeps being
answered. A helper of our own stands in for them (the credential-helper protocol is a program
on ``PATH``); the bot is in-process, its copy between the lab's real registries."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import lab as lab_module
from mirror.credentials import Credential
from mirror.engines.registry.auth import docker_config_credential
from mirror.models import ItemStatus
from tests.test_app import finish, running_bot, say, settings_for, until

SLOW_HELPER = """#!/bin/sh
# docker-credential-slow: answers after 3 s; says when it starts and when it is done
read server
here="$(dirname "$0")"
touch "$here/started"
sleep 3
touch "$here/finished"
echo '{"ServerURL":"'"$server"'","Username":"USER","Secret":"PASSWORD"}'
"""

HANGING_HELPER = """#!/bin/sh
# docker-credential-hang: never answers, and leaves a child behind
read server
sleep 600 &
echo "$$ $!" > "$(dirname "$0")/pids"
wait
"""


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    """The helper on PATH, and a docker config (``$DOCKER_CONFIG``) whose credsStore is it."""
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    helper = helpers / f"docker-credential-{name}"
    helper.write_text(script)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": name}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return helpers


async def test_help_is_answered_while_a_credential_helper_thinks(
    lab: lab_module.Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = SLOW_HELPER.replace("USER", lab.auth_user).replace("PASSWORD", lab.auth_password)
    helpers = install(tmp_path, monkeypatch, "slow", script)
    settings = settings_for(tmp_path, lab.target, lab.auth)
    async with running_bot(settings) as bot:
        # The source wants a login: the copy asks the helper for it.
        asked = await say(bot, "alice", "c1", f"/mirror {lab.auth}/library/hello:1.0")
        await until((helpers / "started").exists)
        answered = await say(bot, "bob", "c2", "/help")
        assert "/mirror" in answered.texts[0]
        assert not (helpers / "finished").exists()  # /help did not wait for the helper
        await finish(bot)
        [job_id] = re.findall(r"Job (\w{6}):", asked.texts[0])
        job = await bot.service.store.get_job(job_id)
        assert job is not None
        assert [i.status for i in job.items] == [ItemStatus.SUCCEEDED]  # its login worked


@pytest.mark.slow  # waits out the helper's timeout
async def test_a_helper_that_hangs_is_ended_and_means_no_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = install(tmp_path, monkeypatch, "hang", HANGING_HELPER)
    # Long enough for the helper to have started its child, even on a busy machine.
    found = await docker_config_credential("registry.example.com", timeout=5)
    assert found is None
    pids = [int(pid) for pid in (helpers / "pids").read_text().split()]
    # The helper and what it started are killed (a signal takes effect when each next runs).
    await until(lambda: not any(_running(pid) for pid in pids))


async def test_a_helpers_answer_is_the_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, "quick", SLOW_HELPER.replace("sleep 3", "true"))
    found = await docker_config_credential("registry.example.com")
    assert found == Credential("USER", "PASSWORD")


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
