"""A Python base image made offline from this machine's own Python, for building the Dockerfile.

The public ``python:3.11-slim`` cannot be pulled here, so the Dockerfile's ``BASE_IMAGE`` is a
build argument and this makes a stand-in with what that image offers the Dockerfile: Python
(with ``venv`` and ``ensurepip``) under ``/usr/local``, ``/bin/sh`` and the few tools the
``RUN`` steps use. Every file is copied from the host with the shared libraries ``ldd`` says
it needs, packed into a tarball and turned into an image with ``docker import``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterable
from pathlib import Path

TOOLS = ("sh", "mkdir", "chown", "id", "cat", "ls", "rm")
"""Host programs the image gets: the shell for RUN and what the Dockerfile's steps call."""

RUNTIME_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", "zlib1g")
"""Debian packages whose libraries a slim image carries whole: compiled wheels (Rust, C++)
load parts of glibc and the C++ runtime that Python itself never asks for."""

SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "__pycache__", "site-packages"}
SKIPPED_PREFIX = "config-"  # the static library and its Makefile: only for building Python


def _needed_libraries(binaries: Iterable[Path]) -> set[Path]:
    """Every shared object (and the loader) the binaries load, as ldd resolves them here."""
    found: set[Path] = set()
    for binary in binaries:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                found.add(Path(match.group(1)))
    return found


def _package_libraries(packages: Iterable[str]) -> list[Path]:
    """The shared libraries (files and their symlinks) of installed Debian packages."""
    listing = subprocess.run(["dpkg", "-L", *packages], capture_output=True, text=True, check=True)
    found = []
    for line in listing.stdout.splitlines():
        path = Path(line)
        if (
            line.startswith(("/lib", "/usr/lib"))
            and "gconv" not in line
            and not path.is_dir()  # merged /usr: /lib itself is a symlink to a directory
            and (path.is_symlink() or path.is_file())
        ):
            found.append(path)
    return found


def _copy(src: Path, root: Path, dest: Path | None = None) -> None:
    target = root / (dest or src).relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.resolve(), target)


def python_rootfs(root: Path) -> str:
    """Lay out the root file system in ``root``; returns the Python version (``3.11``)."""
    version = sysconfig.get_python_version()
    prefix = Path(sys.base_prefix)
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(prefix)})["stdlib"])
    if not (stdlib / "ensurepip").is_dir():
        raise RuntimeError(f"{prefix} has no ensurepip, so `python -m venv` could not work")
    python = prefix / "bin" / f"python{version}"

    local = root / "usr/local"
    for path in stdlib.rglob("*"):
        rel = path.relative_to(stdlib)
        if set(rel.parts) & SKIPPED or rel.parts[0].startswith(SKIPPED_PREFIX) or path.is_dir():
            continue
        _copy(path, root, Path("/usr/local/lib") / f"python{version}" / rel)
    (local / "lib" / f"python{version}" / "site-packages").mkdir(parents=True, exist_ok=True)
    _copy(python, root, Path("/usr/local/bin") / f"python{version}")
    for alias in ("python3", "python"):
        (local / "bin" / alias).symlink_to(f"python{version}")

    tools = [Path(shutil.which(tool) or f"/bin/{tool}") for tool in TOOLS]
    for tool in tools:
        _copy(tool, root, Path("/bin") / tool.name)
    dynload = list((stdlib / "lib-dynload").glob("*.so"))
    for lib in _package_libraries(RUNTIME_PACKAGES):
        target = root / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, target, follow_symlinks=False)
    for lib in _needed_libraries([python, *tools, *dynload]):
        # Into the loader's trusted directory whatever the host's layout (pyenv's RUNPATH
        # points into /root, which the image does not have).
        target = Path("/lib/x86_64-linux-gnu") / lib.name
        if not (root / target.relative_to("/")).exists():
            _copy(lib, root, target)

    debian_wheels = Path("/usr/share/python-wheels")  # Debian's ensurepip takes pip from here
    if debian_wheels.is_dir():
        for wheel in debian_wheels.iterdir():
            _copy(wheel, root)

    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    for name in ("tmp", "root"):
        (root / name).mkdir(exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    return version


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def import_base_image(docker_env: dict[str, str], work: Path, tag: str) -> str:
    """Build the root file system under ``work`` and ``docker import`` it as ``tag``."""
    root = work / "rootfs"
    python_rootfs(root)
    tarball = work / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name, filter=_as_root)
    subprocess.run(
        [
            "docker",
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            str(tarball),
            tag,
        ],
        env=docker_env,
        check=True,
        capture_output=True,
    )
    return tag
