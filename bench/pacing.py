"""Pacing benchmark: thirty /mirror requests at once, twenty of them in two Telegram groups.

Runs ``mirror-bot run`` (the real Telegram adapter) against a fresh lab and the local Bot API
server in its enforcing mode (20 sends+edits a minute per group, 1 a second per private
chat, 30 a second overall; 429 with ``retry_after`` beyond). The image is already mirrored,
so the copies cost nothing and what is measured is the chat side: seconds from the requests
to the last final answer, calls refused (429), sends and edits made, and how long until every
live message showed its last state. Goal: all answered in under 30 s, nothing refused.

    .venv/bin/python bench/pacing.py [--source DIR] [--settle 90]

``--source DIR`` runs the bot from another checkout's ``bot/``, ``adapters/`` and ``mirror/``
(e.g. ``git archive main bot adapters mirror | tar -x -C /tmp/main``): before and after, with
the same server and scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIRROR_BOT = str(Path(sys.executable).parent / "mirror-bot")
TOKEN = "123456:bench-token"


def load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab"] = module
    spec.loader.exec_module(module)
    return module


async def play(env: dict[str, str], image: str, root: Path, settle: float) -> int:
    from tests.support.busy_chats import allowed_users, ask_all
    from tests.support.fake_telegram import FakeTelegram

    telegram = await FakeTelegram(TOKEN, enforce=True).start()
    env = env | {
        "MIRROR_ALLOWED_USERS": allowed_users(),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": telegram.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = root / "bot.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            MIRROR_BOT, "run", env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        await telegram.wait_for(lambda: telegram.ok("getUpdates"), 60)
        played = ask_all(telegram, image)
        await telegram.wait_for(lambda: not played.unanswered(telegram) or None, 600)
        answered = played.last_answer_after(telegram)
        # the live messages' last views, which a busy group gets after the answers
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and not all_settled(telegram):
            await asyncio.sleep(0.2)
        settled = time.monotonic() - played.sent_at if all_settled(telegram) else None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await telegram.close()
    paced = [c for c in telegram.calls if c.method in ("sendMessage", "editMessageText")]
    refused = [c for c in paced if c.status == 429]
    print(f"requests:                       {len(played.requests)}")
    print(f"last final answer after:        {answered:.1f} s")
    print(f"calls refused (429):            {len(refused)}")
    print(
        f"sends / edits accepted:         {len(telegram.ok('sendMessage'))} / "
        f"{len(telegram.ok('editMessageText'))}"
    )
    shown = f"{settled:.1f} s" if settled is not None else f"not within {settle:.0f} s"
    print(f"every live message at its end:  {shown}")
    print(f"tracebacks in the bot's log:    {log.read_text().count('Traceback')}")
    return 0 if not refused and answered < 30 else 1


def all_settled(telegram: object) -> bool:
    """Every acknowledgement was edited to a finished state (or is one)."""
    from tests.support.fake_telegram import FakeTelegram

    assert isinstance(telegram, FakeTelegram)
    acks = [c for c in telegram.ok("sendMessage") if c.text.startswith("⏳")]
    for ack in acks:
        assert ack.message_id is not None
        edits = telegram.edits_of(ack.chat_id, ack.message_id)
        if not edits or "done" not in edits[-1].text:
            return False
    return bool(acks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="run the bot from this source tree")
    parser.add_argument("--settle", type=float, default=90.0, help="wait for the last views")
    args = parser.parse_args()
    lab_module = load_lab()
    root = Path(tempfile.mkdtemp(prefix="pacing-", dir="/tmp"))
    lab = lab_module.Lab.start(root)
    try:
        lab_module.seed(lab)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_"))
        }
        env |= lab.env() | {
            "MIRROR_DB": str(root / "pacing.db"),
            "MIRROR_ENGINE": "registry",
            "MIRROR_TARGET": f"{lab.target}/bench{uuid.uuid4().hex[:8]}",
        }
        if args.source is not None:
            env["PYTHONPATH"] = str(args.source.resolve())
        image = f"{lab.source}/library/hello:1.0"
        subprocess.run([MIRROR_BOT, "mirror", image], env=env, check=True, capture_output=True)
        return asyncio.run(play(env, image, root, args.settle))
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
