"""The benchmarks still run: the copy benchmark on a tiny image, one round, our docker engine
and the Docker CLI; the start-up benchmark for one round.

No timing is asserted: only that the contenders ran and the numbers the reports are built
from are present and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "copy_bench.py"
STARTUP = BENCH.with_name("startup.py")
WORKERS = BENCH.with_name("workers.py")


@pytest.mark.lab  # the benchmark starts a lab of its own, not the fixture: marked by hand
def test_bench_copy_reports_both_contenders() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--size-mib",
            "4",
            "--layers",
            "2",
            "--rounds",
            "1",
            "--contenders",
            "engine-docker,docker-cli",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["image"]["layers"] == 2
    assert report["image"]["bytes"] >= 4 << 20  # random data does not compress
    rows = {row["contender"]: row for row in report["contenders"]}
    assert set(rows) == {"engine-docker", "docker-cli"}
    for row in rows.values():
        assert row["skipped"] is None
        assert len(row["seconds"]) == 1
        assert row["median_seconds"] > 0
        assert row["mb_per_s"] > 0
        assert row["peak_rss_mib"] > 1  # a real process's own RSS, not a zero from a failed wait
        assert row["vs_skopeo"] is None  # skopeo was not asked for
    assert rows["docker-cli"]["vs_docker_cli"] == 1.0
    assert rows["engine-docker"]["vs_docker_cli"] > 0
    # mirror-bot's own report of the job is part of its wall time, never more.
    engine = rows["engine-docker"]
    assert 0 < engine["median_job_seconds"] <= engine["median_seconds"]
    assert set(engine["median_phases"]) >= {"start-up", "resolving", "copying", "pushing", "exit"}
    assert set(rows["docker-cli"]["median_phases"]) == {"pull", "tag", "push", "rmi"}


@pytest.mark.slow  # a few dozen mirror-bot processes
def test_bench_startup_compares_the_dry_run_with_skopeo() -> None:
    done = subprocess.run(
        [sys.executable, str(STARTUP), "--rounds", "1", "--imports", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["contender"]: row for row in report["contenders"]}
    assert set(rows) == {"mirror-bot dry run", "skopeo --version", "skopeo inspect --help"}
    assert rows["skopeo --version"]["ratio"] == 1.0
    assert rows["mirror-bot dry run"]["median_ms"] > 0
    assert rows["mirror-bot dry run"]["ratio"] > 0
    assert len(report["imports"]) == 5
    assert all(float(ms) > 0 for ms, _, _ in report["imports"])
    assert any(name.startswith("bot.") for _, _, name in report["imports"])  # ours, not python's


@pytest.mark.lab  # the benchmark starts a lab of its own, not the fixture: marked by hand
def test_bench_wan_mode_copies_many_images_through_the_long_link() -> None:
    """WAN mode and many images together: every contender copies every image through the relay
    (a short delay here: the numbers are not the point, the run is), the relay counts their
    requests, and a cap on the whole link gives a floor to compare with."""
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--wan",
            "--wan-delay-ms",
            "20",
            "--wan-total-mb",
            "200",
            "--many",
            "2",
            "--rounds",
            "1",
            "--contenders",
            "skopeo,skopeo-p4,engine-registry:MIRROR_BLOB_STREAMS=1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["image"]["images"] == 2
    assert report["image"]["layers"] == 4  # two platforms each
    assert report["setting"].startswith("source over a WAN link: 20 ms per request")
    assert "200 MB/s for the whole link" in report["setting"]
    assert report["floor_seconds"] > 0
    rows = {row["contender"]: row for row in report["contenders"]}
    assert set(rows) == {"skopeo", "skopeo-p4", "engine-registry:MIRROR_BLOB_STREAMS=1"}
    for row in rows.values():
        assert row["skipped"] is None
        assert row["median_seconds"] > 0
        assert row["vs_skopeo"] > 0 and row["vs_skopeo_p4"] > 0 and row["vs_floor"] > 1
        low, high = row["vs_skopeo_spread"]
        assert low <= row["vs_skopeo"] <= high
        # Two images of an index and two platforms each: at least its manifests and blobs.
        assert row["requests_per_image"] >= 7
    assert rows["skopeo"]["vs_skopeo"] == rows["skopeo-p4"]["vs_skopeo_p4"] == 1.0
    assert rows["engine-registry:MIRROR_BLOB_STREAMS=1"]["command"].endswith(
        "with MIRROR_BLOB_STREAMS=1"
    )


@pytest.mark.lab  # the benchmark starts a lab and a PostgreSQL of its own: marked by hand
def test_bench_workers_runs_a_round_per_worker_count() -> None:
    argv = ["--images", "2", "--size-mib", "1", "--workers", "1,2", "--json"]
    done = subprocess.run(
        [sys.executable, str(WORKERS), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rounds = json.loads(done.stdout)["rounds"]
    assert [r["workers"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["succeeded"] == r["images"] == 2  # every copy done, by the workers
        assert r["copies_per_minute"] > 0
        assert r["front_cpu_seconds"] > 0  # the kernel's account of a real exited front
