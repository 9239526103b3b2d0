"""How pytest-xdist hands tests to its workers: one by one, except those sharing a fixture that
lives for their module (a bot process, a token registry), which go to one worker together.

xdist's own ``--dist loadgroup`` would do the second part from ``xdist_group`` marks, but it
passes the group by rewriting each test's node id, which pytest 9.2 no longer lets a plugin
do (pytest-xdist issue 1386): the marks are silently ignored. So each worker writes the
groups it found to a file (``record``), and the controller's scheduler (``ModuleGroups``,
chosen for ``--dist loadgroup`` by ``tests/conftest.py``) reads them once every worker has
collected, before it hands out the first test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

WORKER_INPUT = "test_groups_dir"
"""The key of ``workerinput`` naming the directory the workers write their groups to."""


def module_groups(items: list[pytest.Item]) -> dict[str, str]:
    """``{nodeid: module}`` for every test that uses a module-, package- or class-scoped
    fixture; session fixtures (the lab) are built once per worker whatever the order."""
    groups = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs}
        if scopes & {"module", "package", "class"}:
            groups[item.nodeid] = item.nodeid.split("::", 1)[0]
    return groups


def record(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: write this worker's groups where the controller will read them."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or WORKER_INPUT not in workerinput:
        return
    path = Path(workerinput[WORKER_INPUT]) / f"{workerinput['workerid']}.json"
    path.write_text(json.dumps(module_groups(items)))


class ModuleGroups(LoadScopeScheduling):
    """Every test is a unit of work of its own, but a module-fixture group is one unit.

    xdist hands out the largest units first (``--loadscope-reorder``, its default), then the
    single tests in collection order, which ``tests/conftest.py`` sorts longest first.
    """

    def __init__(self, config: pytest.Config, groups_dir: Path, log: Producer | None = None):
        super().__init__(config, log)
        self._groups_dir = groups_dir
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # first called once every worker has collected
            self._groups = {}
            for name in sorted(os.listdir(self._groups_dir)):
                self._groups.update(json.loads((self._groups_dir / name).read_text()))
        return self._groups.get(nodeid, nodeid)
