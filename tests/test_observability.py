"""``mirror-bot run`` with MIRROR_METRICS_PORT: /metrics moves when a job runs, /healthz says
whether the bot can work, and every log line of a job names the job.

The bot runs as a subprocess with the console adapter on pipes (commands on stdin, answers on
stdout, the log on stderr) against the lab's registries and daemon.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import lab as lab_module
from tests.support.cli import MIRROR_BOT, bot_env


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_serving(proc: subprocess.Popen[str], port: int) -> None:
    """Poll until the HTTP server is up (readiness, not a timing assertion)."""
    for _ in range(600):
        assert proc.poll() is None, (
            f"mirror-bot run exited: {proc.stderr.read() if proc.stderr else ''}"
        )
        try:
            get(port, "/healthz")
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the metrics server never answered")


@contextmanager
def running_bot(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [MIRROR_BOT, "run"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def samples(text: str) -> dict[str, float]:
    """``name{label="v"}`` -> value, for every sample of the exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def scrape(port: int) -> dict[str, float]:
    status, body = get(port, "/metrics")
    assert status == 200
    return samples(body.decode())


def test_metrics_move_when_a_job_runs_and_its_log_lines_carry_its_id(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    port = lab_module.free_port()
    env = bot_env(
        lab,
        tmp_path / "metrics.db",
        MIRROR_TARGET=f"{lab.target}/metrics{port}",  # nothing there yet: a real copy
        MIRROR_METRICS_PORT=str(port),
        MIRROR_METRICS_LISTEN="127.0.0.1",
        MIRROR_LOG_LEVEL="INFO",
        MIRROR_ENGINE="registry",
    )
    with running_bot(env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        wait_until_serving(proc, port)
        status, body = get(port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"store": "ok", "engines": {"registry": "ok"}, "status": "ok"}

        before = scrape(port)
        assert before['mirror_copies_total{status="succeeded"}'] == 0
        assert before["mirror_copied_bytes_total"] == 0
        assert before["mirror_copy_duration_seconds_count"] == 0
        assert before["mirror_queue_depth"] == 0

        proc.stdin.write(f"/mirror {lab.source}/library/multi:1.0\n")
        proc.stdin.flush()
        job_id = None
        for line in proc.stdout:
            if found := re.search(r"Job (\w{6}): mirroring 1 image", line):
                job_id = found.group(1)
            if job_id and f"Job {job_id} done" in line:
                break
        assert job_id is not None

        after = scrape(port)
        assert after['mirror_copies_total{status="succeeded"}'] == 1
        assert after['mirror_copies_total{status="failed"}'] == 0
        assert after["mirror_copied_bytes_total"] > 0
        assert after["mirror_copy_duration_seconds_count"] == 1
        assert after["mirror_queue_depth"] == 0

        proc.stdin.close()  # end of input: the console adapter stops, the bot exits
        assert proc.wait(timeout=60) == 0
        log = proc.stderr.read().splitlines()

    job_lines = [line for line in log if "logger=mirror.jobs" in line or job_id in line]
    assert len(job_lines) >= 2, log  # the copy's start and its end at least
    for line in job_lines:
        assert f" job={job_id} " in line, line
    server = [line for line in log if "logger=bot.health" in line]
    assert server and all(" job=- " in line for line in server)


def test_healthz_fails_when_the_only_engine_cannot_work(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    port = lab_module.free_port()
    env = bot_env(
        lab,
        tmp_path / "health.db",
        MIRROR_METRICS_PORT=str(port),
        MIRROR_METRICS_LISTEN="127.0.0.1",
        MIRROR_ENGINE="docker",
        DOCKER_HOST=f"unix://{tmp_path}/no-daemon.sock",
    )
    with running_bot(env) as proc:
        wait_until_serving(proc, port)
        status, body = get(port, "/healthz")
    assert status == 503
    report = json.loads(body)
    assert report["status"] == "failing"
    assert report["store"] == "ok"
    assert report["engines"] == {
        "docker": f"The Docker daemon at `unix://{tmp_path}/no-daemon.sock` does not answer."
    }


def test_a_metrics_port_in_use_stops_the_bot_with_one_sentence(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = bot_env(
            lab,
            tmp_path / "port.db",
            MIRROR_METRICS_PORT=str(port),
            MIRROR_METRICS_LISTEN="127.0.0.1",
        )
        done = subprocess.run(
            [MIRROR_BOT, "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2
    assert f"Cannot serve metrics on 127.0.0.1:{port} (Address already in use)" in done.stderr
    assert "Traceback" not in done.stderr
