"""Through a real forward proxy (tinyproxy): the proxy is trusted, destinations are still guarded.

The operator names the proxy in ``HTTP_PROXY``/``HTTPS_PROXY``, often by a name that resolves to
loopback (``localhost``): connecting to it is not server-side request forgery. What the copy
reaches through it is: a destination at an internal address nobody allowed is refused before the
request leaves, and the proxy's log shows it never asked for it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab as lab_module
from mirror.egress import EgressGuard
from mirror.engines.base import CopyRequest
from mirror.engines.registry.client import RegistryClient
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import CopyFailed
from mirror.reference import ImageRef
from mirror.text import Text, text_of
from tests.support.cli import MIRROR_BOT, bot_env
from tests.support.tls_registry import LabCA, tls_registry, trust


@dataclass
class Proxy:
    port: int
    log: Path

    def asked_for(self, address: str) -> bool:
        """Whether a request for ``address`` (host:port) went through the proxy."""
        return address in self.log.read_text(errors="replace")


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Proxy]:
    """tinyproxy on a free loopback port, for 127.0.0.1 only, its own config and log."""
    binary = shutil.which("tinyproxy")
    assert binary, "tinyproxy is missing: run `bash scripts/dev.sh setup`"
    port = lab_module.free_port()
    log = tmp_path / "tinyproxy.log"
    log.touch()
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Connect\n"
        f'LogFile "{log}"\nMaxClients 32\nDisableViaHeader Yes\n'
    )
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"tinyproxy exited: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tinyproxy did not start listening"
                time.sleep(0.05)
        yield Proxy(port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def behind_proxy(tinyproxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> Proxy:
    """The environment an operator sets: the proxy by name, nothing exempted."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, f"http://localhost:{tinyproxy.port}")
    return tinyproxy


def request(source: str, target: str, repository: str) -> CopyRequest:
    return CopyRequest(
        ImageRef(source, repository, "1.0", None),
        ImageRef(target, f"m/{repository}", "1.0", None),
        None,
    )


async def test_a_copy_goes_through_a_proxy_named_localhost(
    lab: lab_module.Lab, behind_proxy: Proxy
) -> None:
    digest = lab_module.push_image(
        lab.source, "proxied/plain", "1.0", (lab_module.LayerSpec(16 * 1024, 71),)
    )
    engine = RegistryEngine.standalone(insecure={lab.source, lab.target})
    try:
        result = await engine.copy(request(lab.source, lab.target, "proxied/plain"), lambda _: None)
    finally:
        await engine.aclose()

    assert result.source_digest == result.target_digest == digest
    assert lab_module.pull_manifest(lab.target, "m/proxied/plain", "1.0")[0]
    assert behind_proxy.asked_for(lab.source)  # it did go through the proxy
    assert behind_proxy.asked_for(lab.target)


@pytest.mark.parametrize("named", ["literal", "hostname"])
async def test_an_internal_source_nobody_allowed_is_refused_through_the_proxy(
    lab: lab_module.Lab, behind_proxy: Proxy, named: str
) -> None:
    """Allowed: the target only. The source is 127.0.0.1, or this machine's name (which the
    bot can resolve, to an internal address), so the proxy must not be asked for it."""
    port = lab.source.rsplit(":", 1)[1]
    source = lab.source if named == "literal" else f"{socket.gethostname()}:{port}"
    engine = RegistryEngine.standalone(insecure={source, lab.target}, allowed_internal={lab.target})
    try:
        with pytest.raises(CopyFailed) as refused:
            await engine.copy(request(source, lab.target, "library/hello"), lambda _: None)
    finally:
        await engine.aclose()

    assert "led to the internal address" in str(refused.value)
    assert source.rsplit(":", 1)[0] in str(refused.value)
    assert not behind_proxy.asked_for(source)


def test_check_reaches_the_target_through_the_proxy_and_says_the_daemon_has_its_own(
    lab: lab_module.Lab, behind_proxy: Proxy, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "check.db", MIRROR_TARGET=f"{lab.target}/mirror")
    done = subprocess.run(
        [MIRROR_BOT, "check"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    lines = done.stdout.splitlines()
    assert lines[1].startswith(f"target registry: ok ({lab.target}"), done
    assert lines[2] == (
        f"docker daemon: ok ({lab.env()['DOCKER_HOST']}; proxies are the daemon's own settings)"
    )
    assert done.returncode == 0
    assert behind_proxy.asked_for(lab.target)


# -- registries with an internal CA (DIR/HOST:PORT/ca.crt), directly and through CONNECT -------


@pytest.fixture
def ca() -> LabCA:
    return LabCA()


@pytest.fixture
def tls_target(tmp_path: Path, ca: LabCA) -> Iterator[str]:
    with tls_registry(tmp_path / "tls-registry", ca) as address:
        yield address


async def copy_to(lab: lab_module.Lab, target: str, certs: Path, repository: str) -> str:
    """Copy a fresh image from the lab's source to ``target`` (TLS, its CA in ``certs``)."""
    digest = lab_module.push_image(
        lab.source, repository, "1.0", (lab_module.LayerSpec(8 * 1024, 91),)
    )
    engine = RegistryEngine.standalone(
        insecure={lab.source}, allowed_internal={lab.source, target}, certs_dir=certs
    )
    try:
        result = await engine.copy(request(lab.source, target, repository), lambda _: None)
    finally:
        await engine.aclose()
    assert result.source_digest == result.target_digest == digest
    return digest


async def target_holds(target: str, certs: Path, repository: str) -> str:
    """The digest the TLS registry itself serves for ``m/REPOSITORY:1.0``."""
    client = RegistryClient(guard=EgressGuard({target}), certs_dir=certs)
    try:
        return (await client.get_manifest(target, f"m/{repository}", "1.0")).digest
    finally:
        await client.aclose()


async def test_an_untrusted_certificate_is_named_with_where_its_ca_goes(
    lab: lab_module.Lab, tls_target: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    certs.mkdir()
    with pytest.raises(CopyFailed) as refused:
        await copy_to(lab, tls_target, certs, "tls/untrusted")
    assert str(refused.value) == (
        f"The certificate of {tls_target} is not trusted: put its CA in "
        f"{certs}/{tls_target}/ca.crt."
    )
    sentence = text_of(refused.value)  # a catalog sentence, so a Chinese asker reads it so
    assert isinstance(sentence, Text) and sentence.params["host"] == tls_target


async def test_with_its_ca_in_place_the_copy_succeeds(
    lab: lab_module.Lab, tls_target: str, ca: LabCA, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    trust(certs, tls_target, ca)
    digest = await copy_to(lab, tls_target, certs, "tls/trusted")
    assert await target_holds(tls_target, certs, "tls/trusted") == digest


async def test_a_tls_registry_is_reached_through_the_proxy_by_connect(
    lab: lab_module.Lab, tls_target: str, ca: LabCA, tmp_path: Path, behind_proxy: Proxy
) -> None:
    certs = tmp_path / "certs.d"
    trust(certs, tls_target, ca)
    digest = await copy_to(lab, tls_target, certs, "tls/proxied")
    assert await target_holds(tls_target, certs, "tls/proxied") == digest
    assert "CONNECT" in behind_proxy.log.read_text() and behind_proxy.asked_for(tls_target)


async def test_mutual_tls_takes_the_client_certificate_from_the_same_folder(
    lab: lab_module.Lab, ca: LabCA, tmp_path: Path
) -> None:
    with tls_registry(tmp_path / "mtls-registry", ca, mutual=True) as target:
        without = tmp_path / "ca-only"
        trust(without, target, ca)
        with pytest.raises(CopyFailed):
            await copy_to(lab, target, without, "tls/no-client-cert")
        certs = tmp_path / "certs.d"
        trust(certs, target, ca, ca.issue("mirror-bot", server=False))
        digest = await copy_to(lab, target, certs, "tls/mutual")
        assert await target_holds(target, certs, "tls/mutual") == digest


def test_check_names_an_untrusted_target_certificate(
    lab: lab_module.Lab, tls_target: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    certs.mkdir()
    env = bot_env(
        lab,
        tmp_path / "check.db",
        MIRROR_TARGET=f"{tls_target}/mirror",
        MIRROR_INSECURE_REGISTRIES="",
        MIRROR_CERTS_DIR=str(certs),
    )
    done = subprocess.run(
        [MIRROR_BOT, "check"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.splitlines()[1] == (
        f"target registry: FAILED: The certificate of {tls_target} is not trusted: put its CA "
        f"in {certs}/{tls_target}/ca.crt."
    ), done
    assert done.returncode == 1
