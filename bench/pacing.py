"""Pacing benchmark: thirty /mirror requests at once, twenty of them in two Telegram groups.

Runs ``mirror-bot run`` (the real Telegram adapter) against a fresh lab and the local Bot API
server in its enforcing mode, which holds the bot to Telegram's published flood limits
(https://core.telegram.org/bots/faq, "My bot is hitting limits, how do I avoid this?"): one
message a second in a private chat, 20 a minute in a group, 30 a second overall, sends and
edits alike, counted over a sliding window; a call beyond them is answered 429 with the
``retry_after`` that makes room (``tests/support/fake_telegram.py``, ``FLOOD_LIMITS``). The
image is not mirrored beforehand: the first jobs copy it for real, the others join that copy
or find it there. Measured: when each request was first acknowledged (a message naming its
job), when the last final answer came, when the last live message showed its end, calls
made and refused. Goal: every live message final within 35 s of the requests, at most 2
calls refused, each requester answered in a reply to their own message.

    .venv/bin/python bench/pacing.py [--source DIR] [--settle 120]

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
    from tests.support.busy_chats import GROUPS, allowed_users, ask_all
    from tests.support.fake_telegram import FLOOD_LIMITS, FakeTelegram

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
        # the live messages' last views, which a busy group may get after the answers
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and played.settled_after(telegram) is None:
            await asyncio.sleep(0.2)
        settled = played.settled_after(telegram)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await telegram.close()
    paced = [c for c in telegram.calls if c.method in ("sendMessage", "editMessageText")]
    refused = [c for c in paced if c.status == 429]
    named = [played.first_named(telegram, r) for r in played.requests]
    acked = max(c.at for c in named if c is not None) - played.sent_at
    group, private, overall = FLOOD_LIMITS["group"], FLOOD_LIMITS["private"], FLOOD_LIMITS["bot"]
    print(
        "limits enforced (core.telegram.org/bots/faq): "
        f"{group[0]} per {group[1]:.0f} s a group, {private[0]} per {private[1]:.0f} s a "
        f"private chat, {overall[0]} per {overall[1]:.0f} s overall; 429 with retry_after beyond"
    )
    print(f"requests:                        {len(played.requests)} (20 in 2 groups, 10 private)")
    print(f"slowest first acknowledgement:   {acked:.1f} s")
    print(f"last final answer after:         {answered:.1f} s")
    shown = f"{settled:.1f} s" if settled is not None else f"not within {settle:.0f} s"
    print(f"last live message final after:   {shown}")
    print(f"calls refused (429):             {len(refused)}")
    print(
        f"sends / edits accepted:          {len(telegram.ok('sendMessage'))} / "
        f"{len(telegram.ok('editMessageText'))}"
    )
    per_group = ", ".join(str(len(played.calls_in(telegram, g.id))) for g in GROUPS)
    print(f"sends + edits per group:         {per_group} (budget {group[0]} a minute)")
    print(f"requests without an answer:      {len(played.unanswered(telegram))}")
    print(f"tracebacks in the bot's log:     {log.read_text().count('Traceback')}")
    ok = settled is not None and settled <= 35 and len(refused) <= 2
    return 0 if ok and not played.unanswered(telegram) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="run the bot from this source tree")
    parser.add_argument("--settle", type=float, default=120.0, help="wait for the last views")
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
        image = f"{lab.source}/library/hello:1.0"  # copied by the first jobs, for real
        return asyncio.run(play(env, image, root, args.settle))
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
