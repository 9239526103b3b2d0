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
