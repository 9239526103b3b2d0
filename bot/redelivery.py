"""Events a chat platform delivers again.

Slack re-sends an event it thinks was not acknowledged within three seconds, Feishu one it
thinks was not taken, DingTalk's gateway a message whose ack came late: each one is the same
request again, and answering it twice would copy twice. Every adapter remembers the ids it
handled lately and drops a repeat; the memory is bounded, since a retry comes within minutes,
not after thousands of other events.
"""

from __future__ import annotations

from mirror.bounded import LRU


class Seen:
    """The last ``size`` event ids; :meth:`first_time` is true once per id."""

    def __init__(self, size: int = 1024) -> None:
        self._ids: LRU[str, None] = LRU(size)

    def first_time(self, event_id: str | None) -> bool:
        """Whether ``event_id`` is new (and remember it). An event without an id cannot be
        told from another, so it always counts as new."""
        if not event_id:
            return True
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        return True
