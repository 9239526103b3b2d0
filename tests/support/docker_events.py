"""What the real daemon did: its event stream, to count pulls without trusting our own code."""

from __future__ import annotations

import time
from typing import Any

import docker


def pulls_since(docker_host: str, started_ns: int) -> list[dict[str, Any]]:
    """Image pulls the daemon reported after ``started_ns`` (``time.time_ns()``)."""
    client = docker.APIClient(base_url=docker_host)
    try:
        events = client.events(
            since=started_ns // 10**9,
            until=int(time.time()) + 1,
            decode=True,
            filters={"event": "pull"},
        )
        return [e for e in events if e["timeNano"] > started_ns]
    finally:
        client.close()
