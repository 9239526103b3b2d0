"""requirements.lock and pyproject.toml agree: the image installs what the project asks for.

The Docker image installs the lock with ``--require-hashes`` and then the project with
``--no-deps``, so a dependency added to pyproject.toml (or to a chat platform's extra, which
the image carries too) but not locked would be missing at run time, and a range narrowed past
the locked pin would ship a version the project refuses. This catches both in a second,
without a network: regenerate with ``bash scripts/dev.sh lock``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
OURS = "hub-mirror-bot (pyproject.toml)"


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: int
    wanted_by_us: bool
    """Whether pip-compile's ``# via`` names pyproject.toml: a direct dependency."""


def parse_lock(text: str) -> dict[str, Pin]:
    """``name==version`` entries of a pip-compile lock, with their hash count and ``via``."""
    pins: dict[str, Pin] = {}
    name = ""
    for line in text.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = Requirement(line.rstrip("\\ "))
            [spec] = requirement.specifier
            assert spec.operator == "==", f"not pinned: {line}"
            name = canonicalize_name(requirement.name)
            pins[name] = Pin(Version(spec.version), 0, wanted_by_us=False)
        elif stripped.startswith("--hash=sha256:") and name:
            pin = pins[name]
            pins[name] = Pin(pin.version, pin.hashes + 1, pin.wanted_by_us)
        elif OURS in stripped and name:
            pin = pins[name]
            pins[name] = Pin(pin.version, pin.hashes, wanted_by_us=True)
    return pins


def extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What ``name[extra]`` adds, from the installed distribution's metadata (names of extras'
    dependencies rarely change between versions; their ranges are the lock tool's business)."""
    if not requirement.extras:
        return []
    found = []
    for raw in metadata.requires(requirement.name) or []:
        extra_dep = Requirement(raw)
        marker = extra_dep.marker
        if marker is not None and any(
            marker.evaluate({"extra": extra}) for extra in requirement.extras
        ):
            found.append(extra_dep)
    return found


def disagreements(project: dict[str, Any], lock: dict[str, Pin]) -> list[str]:
    """One sentence per way the lock does not satisfy the project (empty: they agree)."""
    problems = []
    runtime = [Requirement(raw) for raw in project["project"]["dependencies"]]
    # The chat platforms' extras too: the image installs the lock, so it carries every one.
    extras = project["project"].get("optional-dependencies", {})
    runtime += [Requirement(raw) for name, deps in extras.items() if name != "dev" for raw in deps]
    build = [Requirement(raw) for raw in project["build-system"]["requires"]]
    for requirement in runtime + build:
        name = canonicalize_name(requirement.name)
        pin = lock.get(name)
        if pin is None:
            problems.append(f"{requirement} is not in requirements.lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"requirements.lock pins {name}=={pin.version}, outside {requirement}")
        for extra_dep in extra_requirements(requirement):
            if canonicalize_name(extra_dep.name) not in lock:
                problems.append(f"{extra_dep.name} ({requirement}) is not in requirements.lock")
    asked = {canonicalize_name(requirement.name) for requirement in runtime + build}
    for name, pin in lock.items():
        if pin.hashes == 0:
            problems.append(f"{name} has no hash in requirements.lock")
        if pin.wanted_by_us and name not in asked:
            problems.append(
                f"requirements.lock still locks {name} for pyproject.toml, which no longer asks"
                " for it"
            )
    return problems


def load() -> tuple[dict[str, Any], dict[str, Pin]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return project, parse_lock((REPO / "requirements.lock").read_text())


def test_the_lock_satisfies_every_dependency_of_pyproject() -> None:
    project, lock = load()
    assert disagreements(project, lock) == []
    # The lock is complete, not only consistent: each direct dependency is marked as ours,
    # and the extras came along (docker[ssh] needs paramiko for DOCKER_HOST=ssh://).
    assert {name for name, pin in lock.items() if pin.wanted_by_us} >= {"docker", "aiohttp"}
    assert "paramiko" in lock
    assert "setuptools" in lock  # the build backend: the image installs the project offline
    assert "dingtalk-stream" in lock  # a chat platform's extra (pyproject.toml's dingtalk)
    assert lock["lark-oapi"].wanted_by_us  # a chat platform's extra: the image carries it


def test_an_extras_new_dependency_is_reported() -> None:
    project, lock = load()
    project["project"]["optional-dependencies"]["feishu"].append("left-pad>=1")
    project["project"]["optional-dependencies"]["dev"].append("right-pad>=1")  # not the image's
    assert disagreements(project, lock) == ["left-pad>=1 is not in requirements.lock"]


def test_a_new_dependency_or_a_narrowed_range_is_reported() -> None:
    project, lock = load()
    locked_click = lock["click"].version
    project["project"]["dependencies"] = [
        *(raw for raw in project["project"]["dependencies"] if not raw.startswith("click")),
        f"click>{locked_click}",
        "left-pad>=1",
    ]
    problems = disagreements(project, lock)
    assert f"requirements.lock pins click=={locked_click}, outside click>{locked_click}" in problems
    assert "left-pad>=1 is not in requirements.lock" in problems


def test_an_extra_left_out_of_the_lock_is_reported() -> None:
    project, lock = load()
    project["project"]["optional-dependencies"]["dingtalk"].append("left-pad>=1")
    project["project"]["optional-dependencies"]["dev"].append("right-pad>=1")  # not in the image
    assert disagreements(project, lock) == ["left-pad>=1 is not in requirements.lock"]


def test_a_dependency_dropped_from_pyproject_but_still_locked_is_reported() -> None:
    project, lock = load()
    project["project"]["dependencies"] = [
        raw for raw in project["project"]["dependencies"] if not raw.startswith("tenacity")
    ]
    assert disagreements(project, lock) == [
        "requirements.lock still locks tenacity for pyproject.toml, which no longer asks for it"
    ]
