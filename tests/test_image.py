"""The container image: it builds from the Dockerfile, the bot starts in it as a non-root user,
answers ``/healthz`` (and Docker's HEALTHCHECK agrees), and copies an image from inside.

Built on the lab's daemon with no network: the public base cannot be pulled here, so the base
is made from this machine's Python (``tests/support/base_image.py``) and passed as
``BASE_IMAGE``; the dependencies come from a wheelhouse and are installed with
``PIP_INSTALL_OPTIONS=--no-index --find-links`` — the same Dockerfile a real build runs, hash
checks included. The wheelhouse holds the very files requirements.lock names, fetched on the
host by ``pip download --require-hashes`` from the package index (PyPI, or the mirror pip is
configured with; pip's cache makes later runs local): wheels built here would not match the
lock's hashes, and the build would rightly refuse them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

import lab as lab_module
from tests.support.base_image import import_base_image
from tests.test_lock import parse_lock
from tests.test_observability import get

REPO = Path(__file__).resolve().parent.parent
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "requirements.lock", "README.md")
PACKAGES = ("mirror", "bot", "adapters")


def docker(env: dict[str, str], *args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args[:2])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image(lab: lab_module.Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = lab.env() | {"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_BUILDKIT": "0"}
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    context.mkdir()
    for name in CONTEXT_FILES:
        shutil.copy2(REPO / name, context / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, context / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    # The wheels download while the base image is made: both take seconds, neither needs
    # the other, and this test is the suite's longest.
    download = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--require-hashes",
            "--requirement",
            str(REPO / "requirements.lock"),
            "--dest",
            str(context / "wheels"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    tag = uuid.uuid4().hex[:8]
    try:
        base = import_base_image(env, work / "base", f"hub-mirror-bot-test-base:{tag}")
    finally:
        output, _ = download.communicate()
    assert download.returncode == 0, output.decode(errors="replace")[-3000:]
    name = f"hub-mirror-bot-test:{tag}"
    try:
        docker(
            env,
            "build",
            "--network",
            "none",
            "--quiet",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--build-arg",
            "PIP_INSTALL_OPTIONS=--no-index --find-links /src/wheels",
            "--tag",
            name,
            str(context),
        )
        yield name
    finally:
        docker(env, "rmi", "--force", name, base, check=False)
        docker(env, "image", "prune", "--force", check=False)


# The timeout covers the module's image build (vfs storage, a venv of ~45 wheels): ~2 min on an
# idle 2-CPU machine, over the default 5 when other suites share it.
@pytest.mark.timeout(900)
@pytest.mark.early
def test_the_bot_runs_in_the_image_as_non_root_and_is_healthy(
    lab: lab_module.Lab, image: str
) -> None:
    env = lab.env() | {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    port = lab_module.free_port()
    lab_env = lab.env()
    container = docker(
        env,
        "run",
        "--detach",
        "--interactive",  # stdin open: the console adapter waits on it
        "--network",
        "host",
        "--health-interval",
        "1s",
        "--env",
        f"MIRROR_METRICS_PORT={port}",
        "--env",
        "MIRROR_METRICS_LISTEN=127.0.0.1",
        "--env",
        f"MIRROR_TARGET={lab_env['MIRROR_TARGET']}",
        "--env",
        f"MIRROR_ALLOWED_SOURCES={lab_env['MIRROR_ALLOWED_SOURCES']}",
        "--env",
        f"MIRROR_INSECURE_REGISTRIES={lab_env['MIRROR_INSECURE_REGISTRIES']}",
        "--env",
        "MIRROR_ENGINE=registry",
        image,
    )
    try:
        report = None
        for _ in range(600):  # readiness: until the server answers or the container stops
            state = json.loads(docker(env, "inspect", "--format", "{{json .State}}", container))
            assert state["Running"], docker(env, "logs", container)
            try:
                status, body = get(port, "/healthz")
            except OSError:
                time.sleep(0.1)
                continue
            assert status == 200, body
            report = json.loads(body)
            break
        assert report == {"store": "ok", "engines": {"registry": "ok"}, "status": "ok"}

        uid = docker(env, "exec", container, "python", "-c", "import os; print(os.getuid())")
        assert uid == "10001"
        config = json.loads(docker(env, "inspect", "--format", "{{json .Config}}", container))
        assert config["User"] == "10001:10001"
        assert "/data" in config["Volumes"]
        assert "MIRROR_DB=/data/mirror.db" in config["Env"]
        assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]

        # Exactly the locked versions, and the project itself.
        listed = docker(
            env,
            "exec",
            container,
            "python",
            "-c",
            "import importlib.metadata as m, json;"
            " print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        )
        installed = {canonicalize_name(name): v for name, v in json.loads(listed).items()}
        locked = parse_lock((REPO / "requirements.lock").read_text())
        assert {name: str(pin.version) for name, pin in locked.items()}.items() <= {
            name: str(Version(version)) for name, version in installed.items()
        }.items()
        assert installed["hub-mirror-bot"] == "0.1.0"

        health = ""
        while health != "healthy":  # Docker's own HEALTHCHECK, every second here
            health = docker(env, "inspect", "--format", "{{.State.Health.Status}}", container)
            assert health in ("starting", "healthy"), docker(env, "logs", container)
            time.sleep(0.2)

        lab_module.push_image(  # an image no other test copied, so the copy is real
            lab.source, "team/in-container", "1.0", (lab_module.LayerSpec(48 * 1024, 7301),)
        )
        copied = docker(
            env,
            "exec",
            container,
            "mirror-bot",
            "mirror",
            "--json",
            f"{lab.source}/team/in-container:1.0",
        )
        [result] = json.loads(copied)
        assert result["status"] == "succeeded", result
        assert result["engine"] == "registry"
        assert (
            docker(
                env,
                "exec",
                container,
                "python",
                "-c",
                "import os; print(os.path.getsize('/data/mirror.db') > 0)",
            )
            == "True"
        )
    finally:
        docker(env, "rm", "--force", "--volumes", container, check=False)
