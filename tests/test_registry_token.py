"""The registry engine against a real registry behind ``auth: token`` and our token server.

The registry is docker-registry 2.8 trusting a test certificate; the token server is ours
(tests/support/token_server.py). Checked: anonymous pulls, authenticated pushes (credentials
from settings or from ``~/.docker/config.json``), refusals in one sentence, and tokens that
expire in the middle of a copy.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lab as lab_module
from mirror.credentials import Credential
from mirror.engines.base import CopyRequest
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import CopyFailed
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef
from tests.support.throttle import throttled
from tests.support.token_server import TokenServer

USER, PASSWORD = "alice", "s3cret-for-tests"
MULTI = "library/multi"


@pytest.fixture(scope="module")
async def tokens(
    lab: lab_module.Lab, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TokenServer]:
    server = await TokenServer(tmp_path_factory.mktemp("token"), users={USER: PASSWORD}).start()
    server.registry = lab.start_token_registry("token", server.registry_settings())
    yield server
    await server.stop()


@pytest.fixture
def registry(tokens: TokenServer) -> str:
    tokens.issued.clear()
    tokens.lifetime, tokens.expires_in = 300.0, None
    return tokens.registry


def no_docker_config(tmp_path: Path) -> Path:
    return tmp_path / "absent" / "config.json"


def engine(lab: lab_module.Lab, registry: str, tmp_path: Path, *, login: bool) -> RegistryEngine:
    return RegistryEngine.standalone(
        {registry: Credential(USER, PASSWORD)} if login else None,
        insecure={lab.source, lab.target, registry},
        docker_config=no_docker_config(tmp_path),
        retry_wait=0.01,
    )


def ignore(_: ProgressEvent) -> None:
    return None


async def copy(found: RegistryEngine, source: ImageRef, target: ImageRef) -> str:
    try:
        result = await found.copy(CopyRequest(source, target, None), ignore)
    finally:
        await found.aclose()
    assert result.digest_identical
    return result.target_digest


async def skopeo_raw(image: str, *creds: str) -> bytes:
    """skopeo runs beside our event loop, which serves the tokens it asks for."""
    args = ["--creds", ":".join(creds)] if creds else []
    process = await asyncio.create_subprocess_exec(
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        *args,
        f"docker://{image}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


async def push_multi(lab: lab_module.Lab, registry: str, tmp_path: Path, repository: str) -> str:
    return await copy(
        engine(lab, registry, tmp_path, login=True),
        ImageRef(lab.source, MULTI, "1.0", None),
        ImageRef(registry, repository, "1.0", None),
    )


async def test_authenticated_push_then_anonymous_pull(
    lab: lab_module.Lab, registry: str, tokens: TokenServer, tmp_path: Path
) -> None:
    source_raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    digest = await push_multi(lab, registry, tmp_path, "team/multi")
    assert await skopeo_raw(f"{registry}/team/multi:1.0", USER, PASSWORD) == source_raw
    pushes = [i for i in tokens.issued if any("push" in g for g in i.granted)]
    assert pushes and all(i.user == USER for i in pushes)

    tokens.issued.clear()
    pulled = await copy(
        engine(lab, registry, tmp_path, login=False),
        ImageRef(registry, "team/multi", "1.0", None),
        ImageRef(lab.target, "t/anonymous", "1.0", None),
    )
    assert pulled == digest
    assert lab_module.pull_manifest(lab.target, "t/anonymous", "1.0")[0] == source_raw
    assert tokens.issued
    assert all(i.user is None for i in tokens.issued)
    assert all(g.endswith(":pull") for i in tokens.issued for g in i.granted)


async def test_credentials_from_docker_config(
    lab: lab_module.Lab, registry: str, tokens: TokenServer, tmp_path: Path
) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    secret = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"http://{registry}": {"auth": secret}}}))
    found = RegistryEngine.standalone(insecure={lab.source, registry}, docker_config=config)
    await copy(
        found,
        ImageRef(lab.source, "library/hello", "1.0", None),
        ImageRef(registry, "team/from-config", "1.0", None),
    )
    assert any(i.user == USER for i in tokens.issued)


@pytest.mark.parametrize("login", [False, True], ids=["anonymous", "wrong-password"])
async def test_a_refused_push_is_one_sentence_and_not_retried(
    lab: lab_module.Lab, registry: str, tmp_path: Path, login: bool
) -> None:
    credentials = {registry: Credential(USER, "wrong")} if login else None
    found = RegistryEngine.standalone(
        credentials, insecure={lab.source, registry}, docker_config=no_docker_config(tmp_path)
    )
    with pytest.raises(CopyFailed) as caught:
        await copy(
            found,
            ImageRef(lab.source, "library/hello", "1.0", None),
            ImageRef(registry, "team/refused", "1.0", None),
        )
    assert not caught.value.transient
    why = (
        "it refused the login; check MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD."
        if login
        else "it wants a login; set MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD "
        "(or run `docker login` on the bot's machine)."
    )
    assert str(caught.value) == (
        f"The target registry `{registry}` refused the push of `{registry}/team/refused:1.0`: "
        + why
    )
    assert PASSWORD not in str(caught.value) and "wrong" not in str(caught.value)


@pytest.mark.parametrize("told", [True, False], ids=["expiry-announced", "expiry-unannounced"])
async def test_tokens_expiring_mid_copy_are_renewed(
    lab: lab_module.Lab, registry: str, tokens: TokenServer, tmp_path: Path, told: bool
) -> None:
    """Tokens that work 2 s, during a copy slowed to ~3 s (1 MiB/s per connection): either we
    renew them before they expire (the server said so) or on the registry's 401 (it did not)."""
    tokens.lifetime = 2.0
    tokens.expires_in = None if told else 300.0
    source_raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    with throttled(lab.source, 1 << 20) as relay:
        digest = await copy(
            RegistryEngine.standalone(
                {registry: Credential(USER, PASSWORD)},
                insecure={relay.address, registry},
                docker_config=no_docker_config(tmp_path),
                retry_wait=0.01,
            ),
            ImageRef(relay.address, MULTI, "1.0", None),
            ImageRef(registry, f"team/expiry-{int(told)}", "1.0", None),
        )
    pushes = [i for i in tokens.issued if i.user == USER]
    scopes = {i.scopes for i in pushes}
    assert len(pushes) > len(scopes)  # the same scope was asked for again: renewed
    raw = await skopeo_raw(f"{registry}/team/expiry-{int(told)}:1.0", USER, PASSWORD)
    assert raw == source_raw
    assert digest.startswith("sha256:")
