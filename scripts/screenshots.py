"""Take the web pages' screenshots in docs/ against the lab (``python scripts/screenshots.py``).

It starts and seeds a lab of its own, runs ``mirror-bot run`` with the console adapter and
``MIRROR_WEB_URL`` on a free loopback port, types a job into the console (two images that
copy, one tag that does not exist) and ``/web``, reads the links the console prints, and has
Debian's headless Chromium (Playwright) photograph the job's page and the operator's view:
``docs/web-job.png`` and ``docs/web-admin.png``. Everything it started is stopped at the end.
The tests never write these files; run this after changing how the pages look.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.async_api import async_playwright

import lab

ROOT = Path(__file__).resolve().parent.parent
MIRROR_BOT = Path(sys.executable).parent / "mirror-bot"
WIDTH = 960


class Console:
    """``mirror-bot run`` on pipes: lines in, every line it prints collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [str(MIRROR_BOT), "run"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def say(self, text: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match[str]:
        """The first line from now on that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"the console never printed {pattern!r}:\n" + "\n".join(self.seen)
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # the console finishes its jobs and ends
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


async def photograph(job_url: str, sign_in_url: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=lab.CHROMIUM, args=list(lab.CHROMIUM_ARGS)
        )
        try:
            context = await browser.new_context(
                viewport={"width": WIDTH, "height": 800}, device_scale_factor=1
            )
            page = await context.new_page()
            await page.goto(job_url)
            await page.wait_for_selector("[data-field=target_digest]")
            await page.screenshot(path=str(out / "web-job.png"), full_page=True)
            await page.goto(sign_in_url)
            await page.click("#sign-in")
            await page.wait_for_selector("svg.chart")
            await page.screenshot(path=str(out / "web-admin.png"), full_page=True)
        finally:
            await browser.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="shots-", dir="/tmp"))
    running = lab.Lab.start(root / "lab")
    console: Console | None = None
    try:
        lab.seed(running)
        port = lab.free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MIRROR_", "SLACK_", "TELEGRAM_", "DINGTALK_", "LC_"))
        }
        env.update(running.env())
        env.update(
            LANG="C.UTF-8",
            MIRROR_DB=str(root / "mirror.db"),
            MIRROR_ENGINE="registry",
            MIRROR_ADMINS=f"console:{getpass.getuser()}",
            MIRROR_WEB_URL=f"http://127.0.0.1:{port}",
            MIRROR_WEB_PORT=str(port),
            MIRROR_WEB_LISTEN="127.0.0.1",
        )
        console = Console(env)
        source = running.source
        console.say(f"/mirror {source}/library/hello:1.0")
        console.wait_for(r"Job \w+ done")
        console.say(
            f"/mirror {source}/library/multi:1.0 {source}/library/hello:1.0 "
            f"{source}/library/app:1.2.5"
        )
        console.wait_for(r"Job \w+: 2 of 3 images ready")
        job_url = console.wait_for(r"(http://127\.0\.0\.1:\d+/jobs/\w+/[\w-]+)").group(1)
        console.say("/web")
        sign_in_url = console.wait_for(r"(http://127\.0\.0\.1:\d+/admin/signin/[\w-]+)").group(1)
        args.out.mkdir(parents=True, exist_ok=True)
        asyncio.run(photograph(job_url, sign_in_url, args.out))
        print(f"wrote {args.out / 'web-job.png'} and {args.out / 'web-admin.png'}")
    finally:
        if console is not None:
            console.stop()
        running.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
