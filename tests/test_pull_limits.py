"""Pull limits (issue 11 §3) against the lab's real registries behind our fault proxy.

The proxy answers a manifest GET with 429, a ``Retry-After`` and ``RateLimit-*`` headers, as
Docker Hub does past its limit. The bot's registry engine here takes a ``Retry-After`` of 1 s
or more as a pull limit (the production threshold is a minute), so a limit lifts within
seconds; what is asserted is states and their order, never durations.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

import lab as lab_module
from bot.app import MirrorBot
from bot.planner import Planner
from bot.policy import Policy
from bot.runtime import allowed_internal, credentials, render_options
from bot.settings import Settings, parse_source_credentials
from bot.view import to_plain_text
from mirror.credentials import Credential
from mirror.engines import installed
from mirror.engines.chooser import EngineChooser
from mirror.jobs import JobService
from mirror.models import ItemStatus
from mirror.store import open_store
from tests.support.cli import MIRROR_BOT, bot_env, clean_env, run_json, run_mirror
from tests.support.engines import engine_config
from tests.support.faults import Fault, fault_proxy
from tests.test_app import PLATFORM, finish, job_id_of, say, settings_for, until
from tests.test_watch import Room

LIMIT = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"}
LEFT = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "99;w=21600"}


@asynccontextmanager
async def limited_bot(settings: Settings) -> AsyncIterator[MirrorBot]:
    """The bot as ``open_runtime`` wires it, with a registry engine that takes a
    ``Retry-After`` of a second or more as a pull limit."""
    policy = Policy(settings)
    config = engine_config(
        credentials(settings),
        insecure=settings.mirror_insecure_registries,
        allowed_internal=allowed_internal(settings),
        long_retry_after=1.0,
    )
    chooser = EngineChooser("registry", installed(), config)
    store = await open_store(settings.mirror_db)
    service = JobService(store, chooser)
    try:
        async with MirrorBot(
            settings, service, policy, Planner(settings, policy), render_options(settings)
        ) as bot:
            yield bot
    finally:
        await chooser.aclose()
        await store.close()


def push(registry: str, repository: str, seed: int) -> str:
    return str(
        lab_module.push_image(registry, repository, "1.0", [lab_module.LayerSpec(2048, seed)])
    )


async def test_a_limited_item_waits_says_so_and_its_job_finishes_by_itself(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    limited, free = (f"library/{n}-{uuid.uuid4().hex[:8]}" for n in ("limited", "free"))
    push(lab.source, limited, seed=401)
    push(lab.source, free, seed=402)
    async with fault_proxy(lab.source) as proxy:
        proxy.add(
            Fault(
                "status",
                f"/{limited}/manifests/",
                times=1,
                status=429,
                headers={"Retry-After": "4", **LIMIT},
            )
        )
        proxy.add(Fault("headers", "/manifests/", times=-1, headers=LEFT))
        settings = settings_for(tmp_path, lab.target, proxy.address)
        async with limited_bot(settings) as bot:
            first, second = (f"{proxy.address}/{repo}:1.0" for repo in (limited, free))
            thread = await say(bot, "alice", "room1", f"/mirror {first} {second}")
            job_id = job_id_of(thread)
            await finish(bot)
            status = await say(bot, "alice", "room1", "/status")

        store = await open_store(settings.mirror_db)
        try:
            job = await store.get_job(job_id)
        finally:
            await store.close()

    views = [to_plain_text(v) for v in thread.messages[0].views]
    waiting = re.compile(
        rf"- {re.escape(first)}: waiting\n    {re.escape(proxy.address)}'s pull limit is "
        r"used up; continuing at \d\d:\d\d UTC\."
    )
    said = [i for i, text in enumerate(views) if waiting.search(text)]
    assert said, views
    # The other image went on while the first waited, and the first finished after it.
    both = [i for i in said if f"- {second}: done" in views[i]]
    assert both, views
    done_at = next(i for i, text in enumerate(views) if f"- {first}: done" in text)
    assert said[0] < done_at
    assert re.match(rf"Job {job_id} done: 2 images ready", thread.texts[-1]), thread.texts
    assert job is not None
    assert [i.status for i in job.items] == [ItemStatus.SUCCEEDED, ItemStatus.SUCCEEDED]
    assert [i.not_before for i in job.items] == [None, None]
    # One 429, then the copy again: not a loop of requests against the limit.
    gets = proxy.requests("GET", f"/{limited}/manifests/")
    assert [s.fault for s in gets[:2]] == ["status", "headers"]
    assert f"{proxy.address}: 99 of 100 pulls left" in status.texts[0]


async def test_a_job_waiting_across_a_restart_resumes_when_the_limit_lifts(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    repository = f"library/restart-{uuid.uuid4().hex[:8]}"
    digest = push(lab.source, repository, seed=403)
    async with fault_proxy(lab.source) as proxy:
        proxy.add(
            Fault(
                "status",
                f"/{repository}/manifests/",
                times=1,
                status=429,
                headers={"Retry-After": "5", **LIMIT},
            )
        )
        settings = settings_for(tmp_path, lab.target, proxy.address)
        room = Room()
        source = f"{proxy.address}/{repository}:1.0"
        async with limited_bot(settings) as bot:
            thread = await say(bot, "alice", "room1", f"/mirror {source}")
            room.keep(thread)
            job_id = job_id_of(thread)

            def told() -> bool:  # told only once stored
                return any("continuing at" in to_plain_text(v) for v in thread.messages[0].views)

            await until(told)
        # The bot is gone, as a kill leaves it: the store says what was waiting, until when.
        store = await open_store(settings.mirror_db)
        try:
            stored = await store.get_job(job_id)
            assert stored is not None
            assert [j.id for j in await store.unfinished_jobs()] == [job_id]
        finally:
            await store.close()
        item = stored.items[0]
        assert item.status is ItemStatus.WAITING and item.not_before is not None
        not_before = item.not_before
        restarted, shown = len(proxy.seen), len(thread.messages[0].views)

        async with limited_bot(settings) as bot:
            assert await bot.recover({PLATFORM: room}) == 1
            await finish(bot)

        after = proxy.seen[restarted:]
    gets = [s for s in after if s.method == "GET" and "/manifests/" in s.path]
    assert gets, after
    assert all(s.wall >= not_before for s in after), (not_before, after)  # not before it lifts
    views = [to_plain_text(v) for v in thread.messages[0].views[shown:]]
    assert "continuing at" in views[0], views  # the resumed message still says it waits
    assert re.match(rf"Job {job_id} done: 1 image ready", thread.texts[-1]), thread.texts
    assert digest in thread.texts[-1]


async def test_a_waiting_job_can_be_cancelled(lab: lab_module.Lab, tmp_path: Path) -> None:
    repository = f"library/cancel-{uuid.uuid4().hex[:8]}"
    push(lab.source, repository, seed=404)
    async with fault_proxy(lab.source) as proxy:
        proxy.add(
            Fault("status", "/manifests/", times=-1, status=429, headers={"Retry-After": "600"})
        )
        settings = settings_for(tmp_path, lab.target, proxy.address)
        async with limited_bot(settings) as bot:
            thread = await say(bot, "alice", "room1", f"/mirror {proxy.address}/{repository}:1.0")
            job_id = job_id_of(thread)
            await until(
                lambda: any("continuing at" in to_plain_text(v) for v in thread.messages[0].views)
            )
            cancelled = await say(bot, "alice", "room1", f"/cancel {job_id}")
            await finish(bot)
            job = await bot.service.store.get_job(job_id)
    assert cancelled.texts == [f"Job {job_id} cancelled."]
    assert job is not None and job.items[0].status is ItemStatus.CANCELLED
    assert len(proxy.requests("GET", "/manifests/")) == 1  # it waited; it never spun


async def test_mirror_command_exits_1_saying_when_the_limit_lifts(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    async with fault_proxy(lab.source) as proxy:
        proxy.add(
            Fault(
                "status",
                "/manifests/",
                times=-1,
                status=429,
                headers={"Retry-After": "3600", **LIMIT},
            )
        )
        env = bot_env(
            lab,
            tmp_path / "m.db",
            MIRROR_ENGINE="registry",
            MIRROR_ALLOWED_SOURCES=proxy.address,
            MIRROR_INSECURE_REGISTRIES=f"{proxy.address},{lab.target}",
        )
        image = f"{proxy.address}/library/hello:1.0"
        before = datetime.now(UTC)
        done = await asyncio.to_thread(run_mirror, env, image)
        code, [result], err = await asyncio.to_thread(run_json, env, image)
        manifest_gets = len(proxy.requests("GET", "/manifests/"))
    sentence = (
        rf"{re.escape(proxy.address)}'s pull limit of 100 is used up; it lifts at "
        r"(\d{4}-\d\d-\d\d )?\d\d:\d\d UTC\."
    )
    assert done.returncode == 1, done.stderr
    assert re.fullmatch(rf"{re.escape(image)}: failed: {sentence}", done.stdout.strip())
    assert code == 1, err
    assert result["status"] == "failed"
    assert re.fullmatch(sentence, result["error"])
    lifts = datetime.fromisoformat(result["lifts_at"])
    assert before + timedelta(minutes=59) <= lifts <= datetime.now(UTC) + timedelta(minutes=61)
    assert lifts.strftime("%H:%M UTC") in result["error"]
    assert manifest_gets == 2  # one per run: no waiting, no retry loop


# -- MIRROR_SOURCE_CREDENTIALS ---------------------------------------------------------------


def test_source_credentials_are_read_per_host_in_either_form() -> None:
    listed = parse_source_credentials(
        "index.docker.io=alice:dckr_pat_x:y, quay.io=org+robot:T0KEN\n127.0.0.1:5000=u:p"
    )
    assert listed == {
        "docker.io": Credential("alice", "dckr_pat_x:y"),
        "quay.io": Credential("org+robot", "T0KEN"),
        "127.0.0.1:5000": Credential("u", "p"),
    }
    assert parse_source_credentials('{"ghcr.io": "bob:has, a comma"}') == {
        "ghcr.io": Credential("bob", "has, a comma")
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_source_credentials=SecretStr("quay.io=org+robot:T0KEN-secret"),
        mirror_target="127.0.0.1:5999/m",
        mirror_target_username="pusher",
        mirror_target_password=SecretStr("push-secret"),
    )
    assert credentials(settings) == {
        "quay.io": Credential("org+robot", "T0KEN-secret"),
        "127.0.0.1:5999": Credential("pusher", "push-secret"),
    }
    assert render_options(settings).login_registries == {"127.0.0.1:5999"}  # only the target
    assert "T0KEN-secret" not in repr(settings)
    basic = base64.b64encode(b"org+robot:T0KEN-secret").decode()
    assert {"T0KEN-secret", basic, "push-secret"} <= set(settings.secrets())


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("docker.io=alice", "the entry for docker.io is not written HOST=USER:PASSWORD"),
        ("alice:s3cret-pw", "entry 1 is not written HOST=USER:PASSWORD"),
        ("https://quay.io=bob:s3cret-pw", "`https://quay.io` is not a registry host"),
        ('{"quay.io": 5}', "every value a string"),
    ],
)
def test_a_bad_source_credential_is_one_sentence_naming_the_variable_and_no_secret(
    tmp_path: Path, value: str, said: str
) -> None:
    import subprocess

    env = clean_env(
        tmp_path / "m.db", MIRROR_TARGET="127.0.0.1:5999/m", MIRROR_SOURCE_CREDENTIALS=value
    )
    done = subprocess.run(
        [MIRROR_BOT, "mirror", "--dry-run", "nginx"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("MIRROR_SOURCE_CREDENTIALS: ") and said in line, line
    assert "s3cret-pw" not in done.stdout + done.stderr


@pytest.mark.parametrize("engine", ["registry", "docker"])
def test_source_credentials_pull_from_a_registry_that_needs_a_login_and_never_leak(
    lab: lab_module.Lab, tmp_path: Path, engine: str
) -> None:
    image = f"{lab.auth}/library/hello:1.0"
    env = bot_env(lab, tmp_path / "m.db", MIRROR_ENGINE=engine, MIRROR_LOG_LEVEL="DEBUG")
    code, [anonymous], _ = run_json(env, image)
    assert code == 1 and anonymous["status"] == "failed"  # the lab gives nothing anonymously
    login = f"{lab.auth_user}:{lab.auth_password}"
    env["MIRROR_SOURCE_CREDENTIALS"] = f"{lab.auth}={login}"
    done = run_mirror(env, image, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [result] = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["engine"] == engine
    said = done.stdout + done.stderr
    assert lab.auth_password not in said
    assert base64.b64encode(login.encode()).decode() not in said


async def test_check_verifies_each_source_login_and_shows_its_pulls_left(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    from tests.test_check import check

    async with fault_proxy(lab.auth) as proxy:
        headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "37;w=21600"}
        proxy.add(Fault("headers", "^/v2/$", times=-1, headers=headers))
        env = bot_env(
            lab,
            tmp_path / "check.db",
            MIRROR_ALLOWED_SOURCES=f"{proxy.address},{lab.auth}",
            MIRROR_INSECURE_REGISTRIES=f"{proxy.address},{lab.auth},{lab.target}",
            MIRROR_SOURCE_CREDENTIALS=(
                f"{proxy.address}={lab.auth_user}:{lab.auth_password} "
                f"{lab.auth}={lab.auth_user}:wrong-pw-4711"
            ),
        )
        code, lines, err = await check(env)
    assert code == 1, err
    assert f"source {proxy.address}: ok (logged in as {lab.auth_user}; 37 of 100 pulls left)" in (
        lines
    )
    assert (
        f"source {lab.auth}: FAILED: {lab.auth} refused the login of {lab.auth_user}: "
        "check MIRROR_SOURCE_CREDENTIALS."
    ) in lines
    assert "wrong-pw-4711" not in "\n".join(lines) + err
    assert lab.auth_password not in "\n".join(lines) + err
