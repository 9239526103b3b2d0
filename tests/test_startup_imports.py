"""``mirror-bot mirror`` starts light: no HTTP client or Docker SDK until an engine is built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, json, sys
from bot.runtime import open_runtime
from bot.settings import Settings

HEAVY = {"aiohttp", "docker", "requests"}

def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & HEAVY)

async def main():
    settings = Settings(mirror_target="127.0.0.1:5999/mirror", mirror_db=sys.argv[1])
    async with open_runtime(settings) as runtime:
        before = loaded()
        runtime.service.engines.get("registry")
        print(json.dumps([before, loaded()]))

asyncio.run(main())
"""


def test_no_http_or_docker_import_before_an_engine_is_built(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "m.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == []
    assert "aiohttp" in after  # the probe can see an import when one happens


DRY_RUN = """
import atexit, json, sys

LATE = {"aiosqlite", "tenacity", "yaml", "platformdirs", "bot.render", "bot.runtime",
        "mirror.store", "mirror.jobs", "bot.planner", "bot.commands"}

def report():
    print(json.dumps(sorted(LATE & set(sys.modules))), file=sys.stderr)

atexit.register(report)
sys.argv = ["mirror-bot", "mirror", "--dry-run", "--json", sys.argv[1]]
from bot.cli import main
main()
"""


def test_a_dry_run_opens_no_database_and_loads_no_store_or_retries(tmp_path: Path) -> None:
    """A script's ``--dry-run`` costs Python's start-up and the planner, nothing more."""
    db = tmp_path / "not-yet" / "m.db"
    done = subprocess.run(
        [sys.executable, "-c", DRY_RUN, "quay.io/prometheus/node-exporter:v1.7.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "MIRROR_TARGET": "127.0.0.1:5999/mirror",
            "MIRROR_DB": str(db),
        },
    )
    assert done.returncode == 0, done.stderr
    [planned] = json.loads(done.stdout)
    assert planned["status"] == "planned"
    assert planned["target"] == "127.0.0.1:5999/mirror/quay.io.prometheus.node-exporter:v1.7.0"
    assert json.loads(done.stderr.strip().splitlines()[-1]) == ["bot.planner"]
    assert not db.parent.exists()
