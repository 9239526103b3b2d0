"""Shared pytest fixtures, and the ``lab`` marker.

``scripts/lab.py`` is loaded here and registered as the module ``lab`` (``import lab`` in a
test), because it is a script, not a package: it must keep working as ``python scripts/lab.py``
before the project is installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _load_lab_module() -> None:
    path = Path(__file__).resolve().parent.parent / "scripts" / "lab.py"
    spec = importlib.util.spec_from_file_location("lab", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab"] = module  # before exec: dataclasses look their module up by name
    spec.loader.exec_module(module)


if "lab" not in sys.modules:
    _load_lab_module()

import lab as lab_module  # noqa: E402  (registered just above)
from tests.support.cli import MIRROR_BOT, Workers, bot_env  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the lab, directly or through another fixture, as ``lab``;
    group tests that share a module's fixture; run the long tests first.

    ``fixturenames`` is the whole closure of a test's fixtures, so a fixture built on ``lab``
    counts too, and nobody has to remember a decorator: ``pytest -m "not lab"`` is the fast
    run, with no daemon and no registry started.

    The order is the one pytest-xdist hands tests out in: the image build (``early``) and
    then the tests of the lab or marked ``slow`` come first, so that the second-long ones do
    not start last and keep one worker busy while the others are done; the quick ones fill
    the gaps at the end. Each group keeps its own order.
    """
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
        if _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=_start_order)


def _start_order(item: pytest.Item) -> int:
    if item.get_closest_marker("early"):
        return 0
    if item.get_closest_marker("lab") or item.get_closest_marker("slow"):
        return 1
    return 2


def _uses_module_fixture(item: pytest.Item) -> bool:
    """Whether a fixture of the test lives for its module (a bot process, a registry).

    Under pytest-xdist (``--dist loadgroup``, as ``scripts/dev.sh test`` runs it) such tests
    are one group, so they run in one worker and the fixture is built once, not once per
    worker that happens to get one of them. Session fixtures (the lab) are per worker anyway.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definition.scope in ("module", "package", "class")
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.fixture(scope="session")
def lab() -> Iterator[lab_module.Lab]:
    """A running, seeded lab (dockerd + source/target/auth registries) for the whole session.

    Its root is a short /tmp dir (unix socket paths must stay under 108 bytes) removed at the
    end; the lab is stopped even when tests fail or are interrupted.
    """
    root = Path(tempfile.mkdtemp(prefix="lab-", dir="/tmp"))
    running = lab_module.Lab.start(root)
    try:
        lab_module.seed(running)
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[lab_module.Postgres]:
    """A throwaway PostgreSQL cluster for the session, started only when a test asks for it."""
    root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    try:
        with lab_module.Postgres.start(root) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_dsn(postgres: lab_module.Postgres) -> str:
    """``MIRROR_DB`` for a new, empty PostgreSQL database: no test sees another's rows."""
    return postgres.create_database(f"test{next(_databases)}")


@pytest.fixture
def workers(lab: lab_module.Lab, pg_dsn: str, tmp_path: Path) -> Iterator[Workers]:
    """Starts ``mirror-bot worker`` processes (registry engine, fast heartbeats); all are
    killed at the end. ``extra`` sources are allowed and reached over plain HTTP; ``more``
    adds settings."""
    started: list[subprocess.Popen[bytes]] = []

    def start(extra: str = "", **more: str) -> subprocess.Popen[bytes]:
        sources = ",".join(filter(None, [lab.source, lab.target, extra]))
        env = bot_env(
            lab,
            tmp_path / "unused.db",
            MIRROR_DB=pg_dsn,
            MIRROR_ENGINE="registry",
            MIRROR_ALLOWED_SOURCES=sources,
            MIRROR_INSECURE_REGISTRIES=sources,
            **more,
        )
        log = (tmp_path / f"worker{len(started)}.log").open("ab")
        with log:
            proc = subprocess.Popen(
                [MIRROR_BOT, "worker", "--heartbeat", "0.5", "--stalled-after", "2"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
