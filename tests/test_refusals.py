"""A target's refusal of a push as one sentence saying what to create or grant (issue 12).

The words table is pure; the engine is then run against a proxy in front of the lab's real
target registry that answers as Harbor does for a project nobody created, and as any registry
does for an account without push rights.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lab as lab_module
from bot import render
from mirror.credentials import Credential
from mirror.engines import installed
from mirror.engines.base import CopyRequest
from mirror.engines.chooser import EngineChooser
from mirror.engines.faults import push_refusal
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import CopyFailed
from mirror.jobs import JobService
from mirror.models import Item, ItemStatus, Job, new_job_id
from mirror.reference import ImageRef
from mirror.store import open_store
from tests.support.engines import engine_config
from tests.support.faults import Fault, FaultProxy, fault_proxy

ACR = "registry.cn-hangzhou.aliyuncs.com"


@pytest.mark.parametrize(
    ("registry", "message", "logged_in", "denied", "expected"),
    [
        (
            "harbor.example.com",
            "project team not found",
            True,
            False,
            "The Harbor project `team` does not exist on `harbor.example.com`: create it",
        ),
        (  # the docker daemon passes Harbor's words on after "unauthorized:"
            "harbor.example.com",
            "unauthorized: project team not found: project team not found",
            True,
            True,
            "The Harbor project `team` does not exist",
        ),
        (ACR, "requested access to the resource is denied", True, True, "the ACR namespace `team`"),
        (
            "harbor.example.com",
            "authentication required",
            False,
            True,
            "refused the push of `harbor.example.com/team/app:1`: it wants a login",
        ),
        ("harbor.example.com", "unauthorized", True, True, "it refused the login"),
        (
            "harbor.example.com",
            "requested access to the resource is denied",
            True,
            True,
            "the account may not push to the namespace `team`; grant it push (write) rights",
        ),
    ],
)
def test_refusals_say_what_to_create_or_grant(
    registry: str, message: str, logged_in: bool, denied: bool, expected: str
) -> None:
    target = ImageRef(registry, "team/app", "1", None)
    said = push_refusal(target, message, logged_in=logged_in, denied=denied)
    assert said is not None and expected in said
    assert said.endswith(".") and "\n" not in said


def test_words_we_do_not_know_are_left_to_the_engine() -> None:
    target = ImageRef("harbor.example.com", "team/app", "1", None)
    assert push_refusal(target, "blob upload unknown", logged_in=True, denied=False) is None
    assert push_refusal(target, "something odd", logged_in=True, denied=True) is None


def _error(code: str, message: str) -> str:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})


@pytest.fixture
async def proxy(lab: lab_module.Lab) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(lab.target) as found:
        yield found


async def _push(lab: lab_module.Lab, proxy: FaultProxy, repository: str, *, login: bool) -> str:
    credentials = {proxy.address: Credential("bob", "secret-4711")} if login else None
    engine = RegistryEngine.standalone(
        credentials, insecure={lab.source, proxy.address}, attempts=1
    )
    request = CopyRequest(
        ImageRef(lab.source, "library/hello", "1.0", None),
        ImageRef(proxy.address, repository, "1.0", None),
        None,
    )
    try:
        with pytest.raises(CopyFailed) as caught:
            await engine.copy(request, lambda event: None)
    finally:
        await engine.aclose()
    return str(caught.value)


async def test_a_harbor_project_nobody_created(lab: lab_module.Lab, proxy: FaultProxy) -> None:
    proxy.add(
        Fault(
            "status",
            r"^/v2/nothere/.+/blobs/uploads/$",
            method="POST",
            times=-1,
            status=404,
            headers={"Content-Type": "application/json"},
            body=_error("NOT_FOUND", "project nothere not found"),
        )
    )
    said = await _push(lab, proxy, "nothere/hello", login=True)
    assert said == (
        f"The Harbor project `nothere` does not exist on `{proxy.address}`: create it "
        "(Projects, New project) or point MIRROR_TARGET at an existing one."
    )
    # the same registry takes a project that exists: the refusal was about the project
    engine = RegistryEngine.standalone(insecure={lab.source, lab.target, proxy.address})
    try:
        done = await engine.copy(
            CopyRequest(
                ImageRef(lab.source, "library/hello", "1.0", None),
                ImageRef(proxy.address, "there/hello", "1.0", None),
                None,
            ),
            lambda event: None,
        )
    finally:
        await engine.aclose()
    assert done.target_digest is not None


async def test_denied_push_is_permission_when_logged_in_and_login_when_not(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    proxy.add(
        Fault(
            "status",
            r"^/v2/locked/.+/blobs/uploads/$",
            method="POST",
            times=-1,
            status=403,
            headers={"Content-Type": "application/json"},
            body=_error("DENIED", "requested access to the resource is denied"),
        )
    )
    with_login = await _push(lab, proxy, "locked/hello", login=True)
    assert with_login == (
        f"The target registry `{proxy.address}` refused the push of "
        f"`{proxy.address}/locked/hello:1.0`: the account may not push to the namespace "
        "`locked`; grant it push (write) rights there, or point MIRROR_TARGET at a namespace "
        "it owns."
    )
    assert "secret-4711" not in with_login
    anonymous = await _push(lab, proxy, "locked/hello", login=False)
    assert "it wants a login; set MIRROR_TARGET_USERNAME" in anonymous


async def test_a_registry_that_makes_pushed_repositories_public_is_said_once_ever(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """Docker Hub is played by the lab's target (``public_on_push``); "once" survives a restart."""
    db = tmp_path / "jobs.db"

    async def copy_once(repository: str, tag: str = "1.0") -> Item:
        store = await open_store(db)
        config = engine_config(insecure={lab.source, lab.target})
        engines = EngineChooser("registry", installed(), config)
        service = JobService(store, engines, public_on_push=frozenset({lab.target}))
        source = ImageRef(lab.source, "library/hello", "1.0", None)
        item = Item("hello", source, ImageRef(lab.target, repository, tag, None), None)
        try:
            job = Job(new_job_id(), "console:me", "console:here", [item])
            await (await service.submit(job, lambda job: None))
        finally:
            await service.aclose()
            await engines.aclose()
            await store.close()
        assert item.status is ItemStatus.SUCCEEDED
        return item

    first = await copy_once("alice/public")
    assert first.notes == (
        f"`{lab.target}` creates a repository it receives by push as public (unless the "
        "account's default is private): anyone can pull `alice/public` unless you make it "
        "private in its settings.",
    )
    answer = render.answer(Job("j", "c:me", "c:here", [first]), render.RenderOptions())
    assert first.notes[0] in answer.lines
    # a new tag in the same repository, by a new store on the same file: nothing more said
    assert (await copy_once("alice/public", "2.0")).notes == ()
    assert (await copy_once("alice/other")).notes != ()  # once per repository
