#!/usr/bin/env python3
"""Benchmark: copy one image into an EMPTY target with each contender, in one run, same data.

Issue 2's goal: our docker engine within 1.05x the wall time of the Docker CLI doing
``docker pull && docker tag && docker push`` on the same image. Benchmarks compare against
peers in one run and report ratios, bytes/s and peak memory; timings never go into pass/fail
tests (docs/architecture.md, testing with real parts).

What one round of one contender is (all against a lab this script starts and stops):

- ``engine-docker``  ``mirror-bot mirror SRC --engine docker --json`` as a subprocess, with
  ``MIRROR_TARGET`` set to a fresh namespace and a throwaway ``MIRROR_DB``: start-up, settings,
  SQLite, the job flow and the engine's own clean-up (``rmi`` of source and target) are all in
  the time, as a user sees it.
- ``docker-cli``     ``docker pull SRC; docker tag SRC DST; docker push DST; docker rmi SRC DST``
  against the lab's daemon. The ``rmi`` is inside the time, so both docker contenders pay the
  same clean-up.
- ``skopeo``         ``skopeo copy --all --preserve-digests`` registry to registry (no daemon): the
  peer of the registry engine.
- ``engine-registry`` ``mirror-bot mirror SRC --engine registry --platform all --json``; skipped
  with a note while ``mirror-bot`` says that engine is not set up.

Every round copies to a new repository (``bench/rN-CONTENDER/...``) of the lab's target
registry; afterwards the copy is checked (manifest present, same number of layers) and its
manifest and blob links are deleted, so no later round can cross-repository *mount* a blob
instead of uploading it. Before each round of a daemon contender the daemon's images are
removed, so every pull downloads every layer. The contenders' order rotates from round to round.

Peak RSS is the copying process's own high-water mark (``VmHWM``, sampled while it runs; see
``run_measured`` for why not ``wait4``): ``mirror-bot`` for our engines, the ``docker`` client
(largest of its four commands) and ``skopeo``. CPU time is the same processes' user + system
time. The daemon's work is counted for neither docker contender.

Usage::

    .venv/bin/python bench/copy_bench.py [--size-mib 256] [--layers 4] [--rounds 3]
                                   [--contenders engine-docker,docker-cli,skopeo,engine-registry]
                                   [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")
PROBE_LAYERS_SEED = 7001
IMAGE_SEED = 9000  # layer i of the benchmark image is LayerSpec(size, IMAGE_SEED + i): cached
DEFAULT_CONTENDERS = ("engine-docker", "docker-cli", "skopeo", "engine-registry")


def _load_lab() -> None:
    """Register ``scripts/lab.py`` as module ``lab``, as tests/conftest.py does."""
    if "lab" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab"] = module  # before exec: dataclasses look their module up by name
    spec.loader.exec_module(module)


_load_lab()
import lab  # noqa: E402  (registered just above)

sys.path.insert(0, str(ROOT))  # the tests' relay is the WAN mode's long link
from tests.support.throttle import ThrottledRelay  # noqa: E402


class BenchError(RuntimeError):
    """A contender failed or the lab misbehaved: the numbers would be meaningless."""


class Unavailable(Exception):
    """A contender cannot run here (yet); it is skipped with this note."""


# --------------------------------------------------------------------------------------------
# Measuring one process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    argv: list[str]
    returncode: int
    seconds: float
    maxrss_kib: int
    cpu_seconds: float  # user + system time of the process itself
    stdout: str
    stderr_lines: list[tuple[float, str]]  # (seconds since start, line), stamped on arrival

    @property
    def stderr(self) -> str:
        return "".join(line for _, line in self.stderr_lines)

    def check(self) -> Proc:
        if self.returncode != 0:
            tail = (self.stderr.strip() or self.stdout.strip())[-800:]
            raise BenchError(f"`{' '.join(self.argv)}` exited {self.returncode}:\n{tail}")
        return self


def run_measured(argv: Sequence[str], env: dict[str, str], timeout: float = 900) -> Proc:
    """Run ``argv``; its wall time, its own peak RSS and CPU time, and its stderr lines stamped
    as they arrive (``mirror-bot`` writes a line per stage: the phases).

    Peak RSS is sampled from ``/proc/PID/status`` (``VmHWM``, the high-water mark of the
    process's memory since its ``exec``) every few milliseconds while it runs, for the process
    and each of its children (the largest one counts: ``xargs -P4`` runs four ``skopeo``).
    Not ``wait4``'s ``ru_maxrss``: Linux carries the pre-``exec`` memory of the forked child, a
    copy of *this* process, into it, so a small client like ``docker`` would report this
    script's own ~30 MiB (``/bin/true`` spawned from a 200 MiB Python reports 200 MiB).
    ``ru_maxrss`` is still the right tool for CPU time (``ru_utime + ru_stime``), which is per
    process.
    """
    lines: list[tuple[float, str]] = []
    peak = [0]
    exited = threading.Event()
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        popen = subprocess.Popen(
            list(argv), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE
        )
        assert popen.stderr is not None
        errors = popen.stderr

        def read_stderr() -> None:
            for raw in errors:
                lines.append((time.perf_counter() - started, raw.decode("utf-8", "replace")))

        def sample_rss() -> None:
            while not exited.is_set():
                peak[0] = max(peak[0], *(_high_water_kib(pid) for pid in _tree(popen.pid)))
                exited.wait(0.005)

        threads = [threading.Thread(target=t, daemon=True) for t in (read_stderr, sample_rss)]
        for thread in threads:
            thread.start()
        timer = threading.Timer(timeout, popen.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(popen.pid, 0)
        finally:
            exited.set()
            timer.cancel()
        seconds = time.perf_counter() - started
        for thread in threads:
            thread.join()
        errors.close()
        popen.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Proc(
            list(argv),
            popen.returncode,
            seconds,
            peak[0],
            usage.ru_utime + usage.ru_stime,
            out.read().decode("utf-8", "replace"),
            lines,
        )


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``xargs`` and the ``skopeo`` processes it runs)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in os.listdir(f"/proc/{current}/task"):
                text = Path(f"/proc/{current}/task/{task}/children").read_text()
                queue.extend(int(child) for child in text.split())
    return found


def _high_water_kib(pid: int) -> int:
    """``VmHWM`` of a running process in KiB; 0 once it has exited (a zombie has no memory)."""
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------------
# The bench: lab, image, environments, per-round target hygiene
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    bytes: int  # config + layer blobs: what crosses the wire each way
    layers: int

    def ref(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Run:
    """One timed copy."""

    seconds: float
    peak_rss_kib: int
    cpu_seconds: float
    targets: list[str]  # REGISTRY/REPOSITORY:TAG that the copy wrote, one per source
    inner_seconds: float | None = None  # mirror-bot's own "seconds" (the job, no start-up)
    phases: dict[str, float] = field(default_factory=dict)  # where the wall time went
    requests: int | None = None  # HTTP requests the source's link carried (WAN mode)


@dataclass
class Bench:
    lab: lab.Lab
    image: Image
    """What one round copies, as a whole (for many images: their sum)."""
    workdir: Path
    images: list[Image] = field(default_factory=list)
    """The images one round copies (default: ``image`` alone)."""
    source_registry: str = ""
    """Where contenders read the source: the lab's registry, or the WAN relay in front of it."""
    bot_extra: dict[str, str] = field(default_factory=dict)
    relay: ThrottledRelay | None = None
    """The long link in front of the source (WAN mode): it counts the requests."""

    def __post_init__(self) -> None:
        self.images = self.images or [self.image]
        self.source_registry = self.source_registry or self.lab.source

    @property
    def sources(self) -> list[str]:
        return [image.ref(self.source_registry) for image in self.images]

    def docker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.lab.docker_host
        env["DOCKER_CLI_HINTS"] = "false"
        return env

    def bot_env(self, namespace: str) -> dict[str, str]:
        """The lab's settings, no chat credentials, a throwaway database per run."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_", "DOCKER_"))
        }
        # An installed image has compiled bytecode (pip writes it); without this the untimed
        # warm-up could not write it either and every timed run would compile bot/ and mirror/.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(self.lab.env())
        if self.source_registry != self.lab.source:
            for name in ("MIRROR_ALLOWED_SOURCES", "MIRROR_INSECURE_REGISTRIES"):
                env[name] += f",{self.source_registry}"
        env.update(self.bot_extra)
        env["MIRROR_TARGET"] = namespace
        fd, db = tempfile.mkstemp(prefix="mirror-", suffix=".db", dir=self.workdir)
        os.close(fd)
        os.unlink(db)
        env["MIRROR_DB"] = db
        return env

    def clear_daemon(self) -> None:
        """Remove every image the daemon holds, so the next pull downloads every layer."""
        env = self.docker_env()
        ids = run_measured(["docker", "image", "ls", "-aq"], env).check().stdout.split()
        if ids:
            run_measured(["docker", "rmi", "-f", *sorted(set(ids))], env).check()

    def settle(self, target: str, expect_layers: int) -> None:
        """Check the copy landed, then delete its manifest and blob links (no later mounts)."""
        repository, tag = _split(target, self.lab.target)
        raw, _ = lab.pull_manifest(self.lab.target, repository, tag)
        manifest = json.loads(raw)
        children = [manifest] if "layers" in manifest else []
        for child in manifest.get("manifests", []):
            data, _ = lab.pull_manifest(self.lab.target, repository, child["digest"])
            children.append(json.loads(data))
        layers = [layer["digest"] for child in children for layer in child["layers"]]
        if len(layers) != expect_layers:
            raise BenchError(f"{target} has {len(layers)} layers, the source {expect_layers}")
        blobs = {*layers, *(child["config"]["digest"] for child in children)}
        for digest in sorted(blobs):
            _delete(self.lab.target, f"/v2/{repository}/blobs/{digest}")
        digests = {str(child["digest"]) for child in manifest.get("manifests", [])}
        digests.add(f"sha256:{hashlib.sha256(raw).hexdigest()}")
        for digest in sorted(digests):
            _delete(self.lab.target, f"/v2/{repository}/manifests/{digest}")


def _split(target: str, registry: str) -> tuple[str, str]:
    if not target.startswith(registry + "/"):
        raise BenchError(f"{target} is not in the lab's target registry {registry}")
    rest = target[len(registry) + 1 :]
    repository, _, tag = rest.rpartition(":")
    return repository, tag


def _delete(registry: str, path: str) -> None:
    conn = http.client.HTTPConnection(registry, timeout=30)
    try:
        conn.request("DELETE", path)
        response = conn.getresponse()
        response.read()
        if response.status not in (202, 404):
            raise BenchError(f"DELETE http://{registry}{path}: HTTP {response.status}")
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One way of copying. ``copy(bench, namespace, sources)`` makes one timed copy of them all."""

    name: str
    uses_daemon: bool
    copy: Callable[[Bench, str, Sequence[str]], Run]
    describe: str

    @property
    def slug(self) -> str:
        """The name as a repository path component (a variant's settings are not one)."""
        return "-".join(part for part in re.split(r"[^a-z0-9]+", self.name.lower()) if part)


def _mirror_bot(
    *engine_args: str, settings: dict[str, str] | None = None
) -> Callable[[Bench, str, Sequence[str]], Run]:
    def copy(bench: Bench, namespace: str, sources: Sequence[str]) -> Run:
        proc = run_measured(
            [MIRROR_BOT, "mirror", *sources, *engine_args, "--json"],
            bench.bot_env(namespace) | (settings or {}),
        )
        try:
            payloads = json.loads(proc.stdout)
            statuses = [(p["status"], p.get("error")) for p in payloads]
        except (ValueError, TypeError, KeyError) as exc:
            raise BenchError(
                f"mirror-bot gave no JSON (exit {proc.returncode}):\n{proc.stderr}"
            ) from exc
        for status, error in statuses:
            if status != "succeeded":
                error = str(error or status)
                if "not set up" in error:
                    raise Unavailable(error)
                raise BenchError(f"mirror-bot {' '.join(engine_args)}: {error}")
        inner = [p.get("seconds") for p in payloads]
        return Run(
            proc.seconds,
            proc.maxrss_kib,
            proc.cpu_seconds,
            [p["target"] for p in payloads],
            max(inner) if len(payloads) == 1 or all(inner) else None,
            _stage_phases(proc) if len(payloads) == 1 else {},
        )

    return copy


def _stage_phases(proc: Proc) -> dict[str, float]:
    """Split a ``mirror-bot mirror`` run by its ``IMAGE: STAGE`` stderr lines.

    ``start-up`` is until the first stage line (imports, settings, SQLite, job stored);
    ``resolving`` is the engine check and source digest; ``copying`` the pull, tag and removal
    of the source name; ``pushing`` the push, size lookup and removal of the target name;
    ``exit`` is after the job finished (report, closing the store and the client).
    """
    phases: dict[str, float] = {}
    last_name, last_at = "start-up", 0.0
    for at, line in proc.stderr_lines:
        word = line.rsplit(": ", 1)[-1].strip()
        if not word or " " in word:
            continue  # not a stage line (a warning, say)
        phases[last_name] = phases.get(last_name, 0.0) + at - last_at
        last_name, last_at = word, at
    phases["exit" if last_name in ("succeeded", "failed") else last_name] = proc.seconds - last_at
    return {name: round(seconds, 3) for name, seconds in phases.items()}


def _docker_cli(bench: Bench, namespace: str, sources: Sequence[str]) -> Run:
    if len(sources) != 1:
        raise Unavailable("the docker-cli contender copies one image per round")
    source = sources[0]
    target = f"{namespace}/{source.split('/', 1)[1]}"
    env = bench.docker_env()
    steps = (
        ["docker", "pull", "-q", source],
        ["docker", "tag", source, target],
        ["docker", "push", target],
        ["docker", "rmi", source, target],
    )
    started = time.perf_counter()
    procs = [run_measured(step, env).check() for step in steps]
    seconds = time.perf_counter() - started
    pushed = procs[2].stdout
    if "Mounted from" in pushed or "already exists" in pushed:
        raise BenchError(f"docker push did not upload every layer:\n{pushed}")
    phases = {step[1]: round(proc.seconds, 3) for step, proc in zip(steps, procs, strict=True)}
    cpu = sum(p.cpu_seconds for p in procs)
    return Run(seconds, max(p.maxrss_kib for p in procs), cpu, [target], phases=phases)


SKOPEO_COPY = [
    "skopeo",
    "copy",
    "--all",
    "--preserve-digests",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
]


def _skopeo_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}


def _skopeo(bench: Bench, namespace: str, sources: Sequence[str]) -> Run:
    """One ``skopeo copy`` per image, one after the other, as a script would run them."""
    started = time.perf_counter()
    procs, targets = [], []
    for source in sources:
        target = f"{namespace}/{source.split('/', 1)[1]}"
        proc = run_measured(
            [*SKOPEO_COPY, f"docker://{source}", f"docker://{target}"], _skopeo_env()
        ).check()
        if "skipped" in proc.stdout:
            raise BenchError(f"skopeo reused blobs instead of copying them:\n{proc.stdout}")
        procs.append(proc)
        targets.append(target)
    seconds = time.perf_counter() - started
    cpu = sum(p.cpu_seconds for p in procs)
    return Run(seconds, max(p.maxrss_kib for p in procs), cpu, targets)


def _skopeo_p4(bench: Bench, namespace: str, sources: Sequence[str]) -> Run:
    """``xargs -P4 -n2 skopeo copy ...``: four copies at a time, what a person scripts for a
    list of images. Peak RSS is the largest ``skopeo``'s; CPU time is all of them (``wait4``
    of ``xargs`` counts the children it waited for)."""
    targets = [f"{namespace}/{source.split('/', 1)[1]}" for source in sources]
    pairs = "".join(
        f"docker://{source} docker://{target}\n"
        for source, target in zip(sources, targets, strict=True)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=bench.workdir) as listing:
        listing.write(pairs)
        listing.flush()
        proc = run_measured(
            ["xargs", "-a", listing.name, "-P4", "-n2", *SKOPEO_COPY], _skopeo_env()
        ).check()
    if "skipped" in proc.stdout:
        raise BenchError(f"skopeo reused blobs instead of copying them:\n{proc.stdout}")
    return Run(proc.seconds, proc.maxrss_kib, proc.cpu_seconds, targets)


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "engine-docker",
            True,
            _mirror_bot("--engine", "docker"),
            "mirror-bot mirror SRC --engine docker --json (subprocess, fresh DB)",
        ),
        Contender(
            "docker-cli",
            True,
            _docker_cli,
            "docker pull; docker tag; docker push; docker rmi",
        ),
        Contender(
            "skopeo",
            False,
            _skopeo,
            "skopeo copy --all --preserve-digests",
        ),
        Contender(
            "skopeo-p4",
            False,
            _skopeo_p4,
            "xargs -P4 -n2 skopeo copy --all --preserve-digests (four images at a time)",
        ),
        Contender(
            "engine-registry",
            False,
            _mirror_bot("--engine", "registry", "--platform", "all"),
            "mirror-bot mirror SRC --engine registry --platform all --json",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    contender: Contender
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _push_test_image(the_lab: lab.Lab, size_mib: int, layers: int) -> Image:
    if size_mib < 1 or layers < 1:
        raise BenchError("--size-mib and --layers must be at least 1")
    total = size_mib << 20
    sizes = [total // layers + (1 if i < total % layers else 0) for i in range(layers)]
    specs = [lab.LayerSpec(size, IMAGE_SEED + i) for i, size in enumerate(sizes)]
    repository, tag = "bench/image", f"{size_mib}m-{layers}l"
    lab.push_image(the_lab.source, repository, tag, specs)
    manifest = json.loads(lab.pull_manifest(the_lab.source, repository, tag)[0])
    size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    return Image(repository, tag, size, len(manifest["layers"]))


def _probe(bench: Bench, contender: Contender, probe: Image) -> str | None:
    """Copy a tiny image once (untimed): a warm-up, and the check that the contender works."""
    if contender.uses_daemon:
        bench.clear_daemon()
    try:
        run = contender.copy(
            bench,
            f"{bench.lab.target}/bench/probe-{contender.slug}",
            [probe.ref(bench.source_registry)],
        )
    except Unavailable as exc:
        return str(exc)
    bench.settle(run.targets[0], probe.layers)
    return None


def measure(
    bench: Bench, contenders: Sequence[Contender], rounds: int, probe: Image
) -> list[Result]:
    results = [Result(c) for c in contenders]
    for result in results:
        result.skipped = _probe(bench, result.contender, probe)
        if result.skipped:
            _note(f"skipping {result.contender.name}: {result.skipped}")
    active = [r for r in results if not r.skipped]
    for round_no in range(1, rounds + 1):
        shift = (round_no - 1) % max(1, len(active))
        for result in active[shift:] + active[:shift]:  # rotate the order round by round
            contender = result.contender
            if contender.uses_daemon:
                bench.clear_daemon()
            namespace = f"{bench.lab.target}/bench/r{round_no}-{contender.slug}"
            os.sync()  # the last round's writes must not be flushed during this one
            if bench.relay is not None:
                bench.relay.reset_counts()
            run = contender.copy(bench, namespace, bench.sources)
            if bench.relay is not None:
                run = dataclasses.replace(run, requests=len(bench.relay.requests))
            for target, image in zip(run.targets, bench.images, strict=True):
                bench.settle(target, image.layers)
            result.runs.append(run)
            inner = f" (job {run.inner_seconds:.2f}s)" if run.inner_seconds is not None else ""
            asked = f", {run.requests} requests" if run.requests is not None else ""
            _note(
                f"round {round_no} {contender.name}: {run.seconds:.2f}s{inner}{asked}, "
                f"peak RSS {run.peak_rss_kib / 1024:.0f} MiB, CPU {run.cpu_seconds:.2f}s"
                + (f", phases {run.phases}" if run.phases else "")
            )
    return results


REFERENCES = ("skopeo", "skopeo-p4", "docker-cli")
"""What each contender is compared with, when it ran: a per-round ratio each."""


def summarize(
    results: Sequence[Result], image: Image, floor: float | None = None, images: int = 1
) -> list[dict[str, Any]]:
    """One row per contender. Every ratio is the median of the per-round ratios (each round's
    runs were minutes apart at most, so a slow drift in the machine's load cancels out), with
    their spread (min, max); ``floor`` is the link's own limit (bytes ÷ its total rate)."""
    walls = {r.contender.name: [run.seconds for run in r.runs] for r in results if r.runs}
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "contender": r.contender.name,
            "command": r.contender.describe,
            "skipped": r.skipped,
        }
        if r.runs:
            median = r.median
            mine = walls[r.contender.name]
            row.update(
                seconds=[round(run.seconds, 3) for run in r.runs],
                median_seconds=round(median, 3),
                spread_seconds=[round(min(mine), 3), round(max(mine), 3)],
                mb_per_s=round(image.bytes / 1e6 / median, 1),
                peak_rss_mib=round(max(run.peak_rss_kib for run in r.runs) / 1024, 1),
                median_cpu_seconds=round(statistics.median(run.cpu_seconds for run in r.runs), 2),
            )
            for reference in REFERENCES:
                key = "vs_" + reference.replace("-", "_")
                row[key], row[key + "_spread"] = _paired(mine, walls.get(reference))
            if floor:
                row["vs_floor"], row["vs_floor_spread"] = _paired(mine, [floor] * len(mine))
            asked = [run.requests for run in r.runs if run.requests is not None]
            if asked:
                row["requests"] = asked
                row["requests_per_image"] = round(statistics.median(asked) / images, 1)
            inner = [run.inner_seconds for run in r.runs if run.inner_seconds is not None]
            if inner:
                row["median_job_seconds"] = round(statistics.median(inner), 3)
            names = list(dict.fromkeys(name for run in r.runs for name in run.phases))
            if names:
                row["median_phases"] = {
                    name: round(statistics.median(run.phases.get(name, 0.0) for run in r.runs), 3)
                    for name in names
                }
        rows.append(row)
    return rows


def _paired(
    walls: list[float], reference: list[float] | None
) -> tuple[float | None, list[float] | None]:
    """The median of the per-round ratios and their (min, max); None without the reference."""
    if not reference or len(reference) != len(walls):
        return None, None
    ratios = [w / ref for w, ref in zip(walls, reference, strict=True)]
    return round(statistics.median(ratios), 3), [round(min(ratios), 3), round(max(ratios), 3)]


class Conditions:
    """How busy the machine was: load average and CPU pressure (PSI) over the measured part.

    The docker contenders are CPU-bound in the daemon (it gunzips on pull and gzips on push),
    so other work on the machine shows up directly in their times.
    """

    def __init__(self) -> None:
        self.load_start = os.getloadavg()[0]
        self.started = time.monotonic()
        self.pressure_start = _cpu_pressure_us()

    def finish(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        pressure_end = _cpu_pressure_us()
        share = None
        if self.pressure_start is not None and pressure_end is not None and elapsed > 0:
            share = round((pressure_end - self.pressure_start) / 1e6 / elapsed, 3)
        return {
            "cpus": os.cpu_count(),
            "load_average_start": round(self.load_start, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "cpu_pressure_some": share,
        }


def _cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (``/proc/pressure/cpu``), if available."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(first.rsplit("total=", 1)[1])
    return None


def table(
    rows: Sequence[dict[str, Any]],
    image: Image,
    rounds: int,
    conditions: dict[str, Any],
    setting: str = "",
) -> str:
    """Markdown: the columns that apply to this run (a ratio needs its reference to have run,
    requests need the long link that counts them)."""
    ran = [row for row in rows if not row.get("skipped")]
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        (
            "median s (min-max)",
            lambda r: f"{r['median_seconds']:.2f} ({_span(r, 'spread_seconds', '{:.2f}')})",
        ),
        ("MB/s", lambda r: f"{r['mb_per_s']:.1f}"),
    ]
    for key, title in (
        ("vs_floor", "vs floor"),
        ("vs_skopeo", "vs skopeo"),
        ("vs_skopeo_p4", "vs skopeo -P4"),
        ("vs_docker_cli", "vs docker-cli"),
    ):
        if any(row.get(key) is not None for row in ran):
            columns.append((title, functools.partial(_ratio_cell, key=key)))
    if any("requests_per_image" in row for row in ran):
        columns.append(("requests/image", lambda r: f"{r.get('requests_per_image', '-')}"))
    columns += [
        ("peak RSS MiB", lambda r: f"{r['peak_rss_mib']:.0f}"),
        ("CPU s", lambda r: f"{r['median_cpu_seconds']:.2f}"),
    ]
    lines = [
        f"{image.repository}: {image.bytes / 2**20:.1f} MiB in {image.layers} layers; "
        f"{rounds} rounds, empty target each round",
        *([setting] if setting else []),
        "",
        "| contender | " + " | ".join(title for title, _ in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for row in rows:
        if row.get("skipped"):
            lines.append(
                f"| {row['contender']} | skipped (see below) |" + " |" * (len(columns) - 1)
            )
            continue
        lines.append(
            f"| {row['contender']} | " + " | ".join(cell(row) for _, cell in columns) + " |"
        )
    lines += [
        "",
        "Every ratio is the median of the per-round ratios (min-max in brackets). MB/s = image",
        "bytes (config + compressed layers) / 10^6 / median wall time. Requests are the HTTP",
        "requests the source's link carried, counted at the relay. Clean-up (`rmi` of source",
        "and target) is inside the time for both docker contenders. Peak RSS and CPU s (user +",
        "system) are the copying processes' own (mirror-bot, the docker client, skopeo; for",
        "-P4 the largest skopeo and the CPU of all); the daemon's work is counted for neither",
        "docker contender.",
    ]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"{row['contender']} skipped: {row['skipped']}")
        if row.get("median_phases"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in row["median_phases"].items())
            lines.append(f"{row['contender']} phases (median s): {parts}")
    pressure = conditions.get("cpu_pressure_some")
    lines.append(
        f"machine: {conditions['cpus']} CPUs, load average {conditions['load_average_start']} "
        f"-> {conditions['load_average_end']}"
        + (f", tasks waited for a CPU {pressure:.0%} of the time" if pressure is not None else "")
    )
    if pressure is not None and pressure > 0.10:
        lines.append("warning: other work competed for the CPU during the run; ratios are noisy.")
    return "\n".join(lines)


def _span(row: dict[str, Any], key: str, form: str) -> str:
    low, high = row[key]
    return f"{form.format(low)}-{form.format(high)}"


def _ratio_cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    return f"{value:.2f}x ({_span(row, key + '_spread', '{:.2f}')})"


def versions(bench: Bench) -> dict[str, str]:
    def first_line(argv: Sequence[str], env: dict[str, str]) -> str:
        with contextlib.suppress(OSError, BenchError):
            return run_measured(argv, env).check().stdout.strip().splitlines()[0]
        return "unknown"

    env = bench.docker_env()
    return {
        "docker_client": first_line(["docker", "version", "-f", "{{.Client.Version}}"], env),
        "docker_server": first_line(["docker", "version", "-f", "{{.Server.Version}}"], env),
        "skopeo": first_line(["skopeo", "--version"], env),
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/copy_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="image size (default 256)")
    parser.add_argument("--layers", type=int, default=4, help="number of layers (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender (default 3)")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma-separated, from: {', '.join(CONTENDERS)}",
    )
    parser.add_argument(
        "--many",
        type=int,
        default=0,
        metavar="N",
        help="copy N different small multi-arch images per round instead of one big one "
        "(mirror-bot: one command; skopeo: one copy after another)",
    )
    parser.add_argument(
        "--wan",
        action="store_true",
        help="read the source through a long link: a delay per request and per new "
        "connection, a rate cap per connection (default contenders: skopeo,engine-registry)",
    )
    parser.add_argument("--wan-delay-ms", type=float, default=100.0, help="default 100")
    parser.add_argument("--wan-rate-mb", type=float, default=8.0, help="MB/s per connection")
    parser.add_argument(
        "--wan-total-mb",
        type=float,
        default=0.0,
        help="MB/s for the whole link, every connection together (default 0: no such cap); "
        "the floor is then image bytes / this rate",
    )
    parser.add_argument(
        "--bot-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the mirror-bot contenders (MIRROR_BLOB_STREAMS=4), repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.contenders == ",".join(DEFAULT_CONTENDERS):
        if args.many:
            args.contenders = "skopeo,skopeo-p4,engine-registry"
        elif args.wan:
            args.contenders = "skopeo,engine-registry"
    if args.wan_total_mb and not args.wan:
        parser.error("--wan-total-mb needs --wan")
    if args.many < 0:
        parser.error("--many cannot be negative")
    if any("=" not in item for item in args.bot_env):
        parser.error("--bot-env takes NAME=VALUE")
    args.bot_extra = dict(item.split("=", 1) for item in args.bot_env)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n.split(":", 1)[0] not in CONTENDERS]
    if unknown or not names:
        parser.error(f"unknown contender {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        args.contender_list = [_variant(n) for n in dict.fromkeys(names)]
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _variant(name: str) -> Contender:
    """``engine-registry:MIRROR_BLOB_STREAMS=1`` is a mirror-bot contender with that setting,
    so two settings are compared in one run, round by round."""
    base, _, spec = name.partition(":")
    if not spec:
        return CONTENDERS[base]
    if not base.startswith("engine-"):
        raise ValueError(f"only mirror-bot contenders take settings, not {base}")
    pairs = [item.split("=", 1) for item in spec.split(":")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"write settings as NAME=VALUE in {name}")
    engine = base.removeprefix("engine-")
    extra = ("--platform", "all") if engine == "registry" else ()
    return Contender(
        name,
        CONTENDERS[base].uses_daemon,
        _mirror_bot("--engine", engine, *extra, settings=dict(pairs)),
        f"{CONTENDERS[base].describe} with {spec.replace(':', ' ')}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for contender in args.contender_list:
        tool = {"docker-cli": "docker", "skopeo": "skopeo"}.get(contender.name)
        if tool and not shutil.which(tool):
            _note(f"bench: `{tool}` is not installed; run `bash scripts/dev.sh setup`")
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    try:
        the_lab = lab.Lab.start(workdir / "lab")
        relay: ThrottledRelay | None = None
        try:
            if args.many:
                _note(f"pushing {args.many} small multi-arch images to the lab")
                images = _push_many(the_lab, args.many)
                image = Image(
                    f"{args.many} multi-arch images",
                    "",
                    sum(i.bytes for i in images),
                    sum(i.layers for i in images),
                )
            else:
                _note(f"pushing a {args.size_mib} MiB image in {args.layers} layers to the lab")
                image = _push_test_image(the_lab, args.size_mib, args.layers)
                images = [image]
            probe = _push_test_image_small(the_lab)
            setting = ""
            floor: float | None = None
            if args.wan:
                rate = int(args.wan_rate_mb * 1e6)
                total = int(args.wan_total_mb * 1e6) or None
                relay = ThrottledRelay(
                    the_lab.source, rate, args.wan_delay_ms / 1000, total=total
                ).start()
                setting = (
                    f"source over a WAN link: {args.wan_delay_ms:.0f} ms per request and per "
                    f"new connection, {args.wan_rate_mb:g} MB/s per connection, "
                    + (
                        f"{args.wan_total_mb:g} MB/s for the whole link"
                        if total
                        else "no cap on the whole link"
                    )
                )
                if total:
                    floor = image.bytes / total
                    setting += f"; floor (bytes / link rate) {floor:.2f} s"
            if args.bot_extra:
                setting += (
                    ("; " if setting else "")
                    + "mirror-bot with "
                    + " ".join(f"{k}={v}" for k, v in args.bot_extra.items())
                )
            bench = Bench(
                the_lab,
                image,
                workdir,
                images,
                relay.address if relay else "",
                args.bot_extra,
                relay,
            )
            conditions = Conditions()
            results = measure(bench, args.contender_list, args.rounds, probe)
            machine = conditions.finish()
            rows = summarize(results, image, floor, len(images))
            if args.json:
                payload = {
                    "image": {
                        "bytes": image.bytes,
                        "layers": image.layers,
                        "size_mib": args.size_mib,
                        "images": len(images),
                    },
                    "setting": setting,
                    "floor_seconds": round(floor, 3) if floor else None,
                    "rounds": args.rounds,
                    "versions": versions(bench),
                    "conditions": machine,
                    "contenders": rows,
                }
                print(json.dumps(payload, indent=2))
            else:
                print(table(rows, image, args.rounds, machine, setting))
        finally:
            if relay is not None:
                relay.stop()
            the_lab.stop()
    except (BenchError, lab.LabError) as exc:
        _note(f"bench: {exc}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _push_many(the_lab: lab.Lab, count: int) -> list[Image]:
    """``count`` different images, each an index of two platforms with one small layer."""
    images = []
    for n in range(count):
        repository, tag = f"bench/many-{n}", "1"
        children = [
            lab.push_image(
                the_lab.source,
                repository,
                None,
                [lab.LayerSpec(256 << 10, IMAGE_SEED + 100 + 2 * n + k)],
                architecture=arch,
            )
            for k, arch in enumerate(("amd64", "arm64"))
        ]
        lab.push_index(the_lab.source, repository, tag, children)
        size = 0
        for child in children:
            manifest = json.loads(lab.pull_manifest(the_lab.source, repository, child)[0])
            size += manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
        images.append(Image(repository, tag, size, 2))
    return images


def _push_test_image_small(the_lab: lab.Lab) -> Image:
    repository, tag = "bench/probe", "1"
    lab.push_image(the_lab.source, repository, tag, [lab.LayerSpec(64 * 1024, PROBE_LAYERS_SEED)])
    manifest = json.loads(lab.pull_manifest(the_lab.source, repository, tag)[0])
    size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    return Image(repository, tag, size, len(manifest["layers"]))


if __name__ == "__main__":
    sys.exit(main())
