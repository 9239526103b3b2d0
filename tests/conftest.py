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
from typing import TYPE_CHECKING

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
from tests.support import scheduling  # noqa: E402
from tests.support.cli import MIRROR_BOT, Workers, bot_env  # noqa: E402

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling
    from xdist.workermanage import WorkerController


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs the lab, directly or through another fixture, as ``lab``;
    run the long tests first; under pytest-xdist, tell the controller which tests share a
    module's fixture (``tests/support/scheduling.py``).

    ``fixturenames`` is the whole closure of a test's fixtures, so a fixture built on ``lab``
    counts too, and nobody has to remember a decorator: ``pytest -m "not lab"`` is the fast
    run, with no daemon and no registry started.

    The order is the one pytest-xdist hands single tests out in: the image build (``early``)
    first, then the tests of the lab or marked ``slow``, so that no long test starts last and
    keeps one worker busy while the others are done; the quick ones fill the gaps at the end.
    """
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
    items.sort(key=_start_order)
    scheduling.record(config, items)


def _start_order(item: pytest.Item) -> int:
    if item.get_closest_marker("early"):
        return 0
    if item.get_closest_marker("lab") or item.get_closest_marker("slow"):
        return 1
    return 2


_GROUPS_DIR = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    """In the xdist controller, for each worker: where to write the groups it collects."""
    config = node.config
    if _GROUPS_DIR not in config.stash:
        groups = Path(tempfile.mkdtemp(prefix="pytest-groups-"))
        config.add_cleanup(lambda: shutil.rmtree(groups, ignore_errors=True))
        config.stash[_GROUPS_DIR] = groups
    node.workerinput[scheduling.WORKER_INPUT] = str(config.stash[_GROUPS_DIR])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """``--dist loadgroup`` (as ``scripts/dev.sh test`` runs): tests one by one, but those
    sharing a module's fixture together (``tests/support/scheduling.py``)."""
    if config.getvalue("dist") != "loadgroup" or _GROUPS_DIR not in config.stash:
        return None
    return scheduling.ModuleGroups(config, config.stash[_GROUPS_DIR], log)


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
