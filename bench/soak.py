"""Soak test (not part of the default suite): 200 mixed requests through the console bot.

Runs ``mirror-bot run`` (the console adapter) against a fresh lab, feeds it a shuffled mix
of valid copies (with many duplicates), bad input, denied sources, missing tags and
read-only commands, then reports requests handled, copies made (pulls seen by the daemon:
duplicates are coalesced or answered "already mirrored"), answers by kind and peak RSS.

    .venv/bin/python bench/soak.py [--requests 200] [--seed 7]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import docker

ROOT = Path(__file__).resolve().parent.parent
MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")


def load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab"] = module
    spec.loader.exec_module(module)
    return module


KINDS = {
    "ready": re.compile(r"^Job \w{6} done: \d+ images? ready", re.M),
    "partly failed": re.compile(r"^Job \w{6}: \d+ of \d+ images ready", re.M),
    "copy failed": re.compile(r"^Job \w{6} failed: nothing was mirrored", re.M),
    "invalid reference": re.compile(r"is not a valid image reference", re.M),
    "denied source": re.compile(r"is not an allowed source registry", re.M),
    "unknown command": re.compile(r"is not a command I know", re.M),
    "usage": re.compile(
        r"is not an option of /mirror|Name at least one image|takes at most one job id", re.M
    ),
    "status": re.compile(r"^Latest jobs in this chat|^No jobs in this chat", re.M),
    "history": re.compile(r"^Mirrored from this chat|^Nothing mirrored", re.M),
    "help": re.compile(r"^hub-mirror-bot copies images", re.M),
}


def requests_for(lab_source: str, count: int, rng: random.Random) -> list[str]:
    pool = [f"{lab_source}/library/soak{i}:1.0" for i in range(6)]
    pool += [f"{lab_source}/library/hello:1.0", f"{lab_source}/library/multi:1.0"]
    makers: list[tuple[int, Callable[[], str]]] = [
        (40, lambda: "/mirror " + " ".join(rng.sample(pool, rng.randint(1, 3)))),
        (12, lambda: f"/mirror {rng.choice(['Bad:Ref', 'a b@', 'UPPER/case', 'x' * 300])}"),
        (
            12,
            lambda: (
                f"/mirror {rng.choice(['evil.example.com/x', '169.254.169.254/m', '10.0.0.1/x'])}"
            ),
        ),
        (8, lambda: f"/mirror {lab_source}/library/missing{rng.randint(0, 3)}:1.0"),
        (8, lambda: rng.choice(["/frob", "/mirrors nginx", "/status a b", "hello"])),
        (5, lambda: rng.choice(["/mirror --force nginx", "/mirror"])),
        (15, lambda: rng.choice(["/status", "/history", "/help"])),
    ]
    weights = [w for w, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    lab_module = load_lab()
    root = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    lab = lab_module.Lab.start(root)
    try:
        lab_module.seed(lab)
        for i in range(6):
            lab_module.push_image(
                lab.source, f"library/soak{i}", "1.0", [lab_module.LayerSpec(256 * 1024, 900 + i)]
            )
        lines = requests_for(lab.source, args.requests, random.Random(args.seed))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_"))
        }
        env |= lab.env() | {"MIRROR_DB": str(root / "soak.db"), "MIRROR_CONCURRENCY": "2"}
        client = docker.APIClient(base_url=lab.docker_host)
        started_ns = time.time_ns()
        started = time.monotonic()
        proc = subprocess.Popen(
            [MIRROR_BOT, "run"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.close()
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        events = client.events(
            since=started_ns // 10**9,
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "image"},
        )
        actions = collections.Counter(
            e["Action"]
            for e in events
            if e["timeNano"] > started_ns and e["Action"] in ("pull", "push")
        )
        client.close()
        kinds = collections.Counter({k: len(p.findall(output)) for k, p in KINDS.items()})
        mirrored = sum(
            len(line.split()) - 1
            for line in lines
            if line.startswith("/mirror ")
            and all(
                part.startswith(lab.source) and "missing" not in part for part in line.split()[1:]
            )
        )
        print(f"requests sent:            {len(lines)}")
        print(f"answers recognised:       {sum(kinds.values())}")
        print(f"exit status:              {os.waitstatus_to_exitcode(status)}")
        print(f"wall time:                {wall:.1f} s")
        print(f"images asked (valid):     {mirrored}")
        print(f"copies made (daemon):     {actions['pull']} pulls, {actions['push']} pushes")
        print(f"peak RSS of the bot:      {usage.ru_maxrss / 1024:.1f} MiB")
        print(f"tracebacks in output:     {output.count('Traceback')}")
        for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:<22}{n}")
        return 0 if output.count("Traceback") == 0 and os.waitstatus_to_exitcode(status) == 0 else 1
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
