"""How long ``mirror-bot mirror REF --dry-run --json`` takes before it does anything.

A script calling ``mirror-bot`` pays this on every call, so it is compared with a peer that
does as little: ``skopeo --version`` and ``skopeo inspect --help`` (a Go binary's start-up).
The dry run parses, names and checks policy without network, so its wall time is Python's
start-up, the imports and the command's own set-up. ``--imports N`` also lists the N slowest
imports of one run (``python -X importtime``, cumulative, the modules the command loads first).

    .venv/bin/python bench/startup.py [--rounds 30] [--imports 15] [--json]

No lab and no network: MIRROR_TARGET defaults to a loopback registry and MIRROR_DB to a
temporary file, so the machine's own settings do not change what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")
REFERENCE = "quay.io/prometheus/node-exporter:v1.7.0"
WARM_UP = 3


@dataclass
class Row:
    contender: str
    command: list[str]
    median_ms: float
    min_ms: float
    ratio: float | None = None
    """Median over the median of ``skopeo --version``; None when skopeo is not installed."""


def wall_ms(command: Sequence[str], env: dict[str, str], rounds: int) -> list[float]:
    """Wall times of ``rounds`` runs after a few unmeasured ones (page cache, .pyc files)."""
    times = []
    for index in range(WARM_UP + rounds):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        if index >= WARM_UP:
            times.append((time.perf_counter() - start) * 1000)
    return times


def slowest_imports(command: Sequence[str], env: dict[str, str], count: int) -> list[list[str]]:
    """The ``count`` largest cumulative import times (µs) of one run, outermost first."""
    done = subprocess.run(
        command,
        env=env | {"PYTHONPROFILEIMPORTTIME": "1"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, indented = line.split("|")
        depth = (len(indented) - len(indented.lstrip()) - 1) // 2
        found.append((int(cumulative), depth, indented.strip()))
    found.sort(reverse=True)
    return [[f"{us / 1000:.1f}", str(depth), name] for us, depth, name in found[:count]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/startup.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="measured runs each (default 30)")
    parser.add_argument("--imports", type=int, default=0, help="list the N slowest imports")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        env = dict(os.environ)
        env.setdefault("MIRROR_TARGET", "127.0.0.1:5000/mirror")
        env["MIRROR_DB"] = str(Path(tmp) / "mirror.db")
        ours = [MIRROR_BOT, "mirror", REFERENCE, "--dry-run", "--json"]
        contenders = [("mirror-bot dry run", ours)]
        if shutil.which("skopeo"):
            contenders += [
                ("skopeo --version", ["skopeo", "--version"]),
                ("skopeo inspect --help", ["skopeo", "inspect", "--help"]),
            ]
        rows = []
        for name, command in contenders:
            times = wall_ms(command, env, args.rounds)
            rows.append(Row(name, command, statistics.median(times), min(times)))
        peer = next((r for r in rows if r.contender == "skopeo --version"), None)
        for row in rows:
            row.ratio = round(row.median_ms / peer.median_ms, 1) if peer else None
        imports = slowest_imports(ours, env, args.imports) if args.imports else []

    if args.json:
        contenders_json = [asdict(r) for r in rows]
        print(json.dumps({"contenders": contenders_json, "imports": imports}, indent=2))
        return 0
    print(f"{'contender':<24} {'median ms':>10} {'min ms':>8} {'vs skopeo':>10}")
    for row in rows:
        ratio = f"{row.ratio:.1f}x" if row.ratio is not None else "-"
        print(f"{row.contender:<24} {row.median_ms:>10.1f} {row.min_ms:>8.1f} {ratio:>10}")
    if imports:
        print("\nslowest imports of one run (cumulative ms, nesting depth):")
        for ms, depth, name in imports:
            print(f"{ms:>8}  {'  ' * int(depth)}{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
