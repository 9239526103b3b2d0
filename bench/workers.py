"""Copies per minute through 1, 2 and 4 ``mirror-bot worker``\\ s, and the front's own CPU.

Each round gets a fresh PostgreSQL database and target namespace (nothing is "already
mirrored"), starts W workers, then a real front (``mirror-bot run``, the console adapter
reading one ``/mirror`` of N images from a file: it finishes its jobs and exits). The sources
sit behind the tests' throttled relay (a rate per connection), because a copy between two
local registries is bound by this machine's two cores, not by bandwidth as a real one is:
workers scale bandwidth, which is what they are for.

    .venv/bin/python bench/workers.py [--images 16] [--size-mib 4] [--rate-mbps 4]
                                      [--workers 1,2,4] [--json]

Reported per round: wall seconds from the front's start to its exit, copies per minute, the
front's CPU seconds (user + system, from the kernel's accounting of the exited process) and
per copy. Lab, PostgreSQL and relay are this machine's; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")
SEED = 12000  # image n is one layer LayerSpec(size, SEED + n): cached between runs


def _load_lab() -> None:
    """Register ``scripts/lab.py`` as module ``lab``, as tests/conftest.py does."""
    if "lab" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab"] = module
    spec.loader.exec_module(module)


_load_lab()
import lab  # noqa: E402  (registered just above)

sys.path.insert(0, str(ROOT))
from tests.support.throttle import ThrottledRelay  # noqa: E402


@dataclass
class Round:
    workers: int
    images: int
    succeeded: int
    wall_seconds: float
    copies_per_minute: float
    front_cpu_seconds: float
    front_cpu_ms_per_copy: float


def _env(the_lab: lab.Lab, dsn: str, relay: str, namespace: str, images: int) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_"))
    }
    sources = f"{relay},{the_lab.source},{the_lab.target}"
    env.update(
        MIRROR_DB=dsn,
        MIRROR_TARGET=f"{the_lab.target}/{namespace}",
        MIRROR_ENGINE="registry",
        MIRROR_ALLOWED_SOURCES=sources,
        MIRROR_INSECURE_REGISTRIES=sources,
        MIRROR_MAX_IMAGES=str(images),
        MIRROR_CONCURRENCY="1",  # per worker: the workers are what is scaled
        MIRROR_LOG_LEVEL="WARNING",
    )
    return env


def run_round(
    the_lab: lab.Lab, pg: lab.Postgres, relay: str, workers: int, images: int, workdir: Path
) -> Round:
    name = f"bench_w{workers}_{int(time.time())}"
    dsn = pg.create_database(name)
    env = _env(the_lab, dsn, relay, name, images)
    started = []
    for n in range(workers):
        log = (workdir / f"{name}-worker{n}.log").open("ab")
        with log:
            started.append(
                subprocess.Popen(
                    [MIRROR_BOT, "worker"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        commands = workdir / f"{name}.txt"
        refs = " ".join(f"{relay}/bench/workers-{n}:1" for n in range(images))
        commands.write_text(f"/mirror {refs}\n")
        with commands.open() as stdin, (workdir / f"{name}-front.log").open("ab") as out:
            begin = time.monotonic()
            front = subprocess.Popen(
                [MIRROR_BOT, "run"], env=env, stdin=stdin, stdout=out, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(front.pid, 0)
            wall = time.monotonic() - begin
            front.returncode = os.waitstatus_to_exitcode(status)
        if front.returncode != 0:
            raise RuntimeError(f"the front exited {front.returncode}; see {out.name}")
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    succeeded = _succeeded(dsn)
    cpu = usage.ru_utime + usage.ru_stime
    return Round(
        workers=workers,
        images=images,
        succeeded=succeeded,
        wall_seconds=round(wall, 2),
        copies_per_minute=round(succeeded / wall * 60, 1),
        front_cpu_seconds=round(cpu, 2),
        front_cpu_ms_per_copy=round(cpu / max(succeeded, 1) * 1000, 1),
    )


def _succeeded(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()
    return int(row[0]) if row else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size-mib", type=int, default=4, help="one layer per image")
    parser.add_argument("--rate-mbps", type=float, default=4.0, help="per source connection")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(part) for part in args.workers.split(",") if part]
    workdir = Path(tempfile.mkdtemp(prefix="bench-workers-", dir="/tmp"))
    pg_root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))  # its own: see lab.Postgres
    rounds: list[Round] = []
    try:
        with lab.Lab.start(workdir / "lab") as the_lab, lab.Postgres.start(pg_root) as pg:
            for n in range(args.images):
                layer = lab.LayerSpec(args.size_mib << 20, SEED + n)
                lab.push_image(the_lab.source, f"bench/workers-{n}", "1", [layer])
            relay = ThrottledRelay(the_lab.source, int(args.rate_mbps * 1_000_000)).start()
            try:
                for count in counts:
                    rounds.append(
                        run_round(the_lab, pg, relay.address, count, args.images, workdir)
                    )
            finally:
                relay.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    if args.json:
        print(json.dumps({"args": vars(args), "rounds": [asdict(r) for r in rounds]}, indent=2))
        return 0
    print(
        f"{args.images} images of {args.size_mib} MiB, sources at {args.rate_mbps} MB/s per "
        "connection, 1 copy at a time per worker"
    )
    header = ("workers", "ok", "wall s", "copies/min", "front CPU s", "ms/copy")
    widths = (8, 4, 8, 11, 12, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in rounds:
        cells = (
            r.workers,
            r.succeeded,
            r.wall_seconds,
            r.copies_per_minute,
            r.front_cpu_seconds,
            r.front_cpu_ms_per_copy,
        )
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
