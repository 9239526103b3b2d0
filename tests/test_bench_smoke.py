"""The benchmark still runs: a tiny image, one round, our docker engine and the Docker CLI.

No timing is asserted (DESIGN.md §3): only that both contenders copied and the numbers the
report is built from are present and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "copy.py"


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
