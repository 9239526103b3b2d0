"""The copy queue's wire format: what crosses PostgreSQL between a front and a worker, as JSON.

- a :class:`CopyRequest` as the copy task's arguments (:func:`task_args`, :func:`request_of`);
- progress as ``NOTIFY`` payloads, ``{"job": ID, "events": [...]}`` (:func:`progress_notice`),
  and the state so far as a row of ``copy_progress`` (:func:`events_json`, :func:`events_of`);
- an :class:`Outcome` as a row of ``copy_outcomes`` (:func:`outcome_json`, :func:`outcome_of`),
  announced by ``{"job": ID, "done": true}`` (:func:`notice_of` reads both kinds).

A sentence (:class:`Text`) crosses as its template and parameters with its English beside it,
so the front answers in the asker's language. Pure functions: no connection, no procrastinate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.engines.base import CopyRequest
from mirror.models import ItemStatus, Outcome, platform_text
from mirror.platform import parse_platform
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import parse_reference
from mirror.text import Text


def task_args(request: CopyRequest) -> dict[str, str | int | None]:
    """The copy task's keyword arguments (procrastinate keeps them as JSON)."""
    return {
        "source": str(request.source),
        "target": str(request.target),
        "platform": platform_text(request.platform),
        "max_bytes": request.max_bytes,
    }


def request_of(source: str, target: str, platform: str, max_bytes: int | None) -> CopyRequest:
    return CopyRequest(
        parse_reference(source), parse_reference(target), parse_platform(platform), max_bytes
    )


def event_json(event: ProgressEvent) -> list[Any]:
    if isinstance(event, StageChanged):
        return ["stage", event.stage.value]
    if isinstance(event, BlobProgress):
        return ["blob", event.blob, event.done, event.total]
    return ["done", event.blob, event.size]


def event_of(data: list[Any]) -> ProgressEvent:
    kind, *rest = data
    if kind == "stage":
        return StageChanged(Stage(rest[0]))
    if kind == "blob":
        return BlobProgress(rest[0], int(rest[1]), rest[2])
    return BlobDone(rest[0], rest[1])


def events_json(events: Iterable[ProgressEvent]) -> str:
    return json.dumps([event_json(e) for e in events])


def events_of(text: str) -> list[ProgressEvent]:
    return [event_of(raw) for raw in json.loads(text)]


def progress_notice(job_id: int, events: Iterable[ProgressEvent]) -> str:
    return json.dumps({"job": job_id, "events": [event_json(e) for e in events]})


@dataclass(frozen=True)
class Notice:
    """One notification on the copies' channel: progress, or the outcome landed."""

    job: int
    events: list[ProgressEvent]
    done: bool


def notice_of(payload: str) -> Notice:
    """Raises ``ValueError``, ``KeyError`` or ``TypeError`` on a payload it cannot read."""
    data = json.loads(payload)
    events = [event_of(raw) for raw in data.get("events", ())]
    return Notice(int(data["job"]), events, bool(data.get("done")))


def _sentence_json(value: Any) -> Any:
    """A :class:`Text` as its template and parameters (so the front answers in the asker's
    language), with its English beside it; anything else as JSON has it."""
    if isinstance(value, Text):
        params = {key: _sentence_json(param) for key, param in value.params.items()}
        return {"text": str(value), "msgid": value.msgid, "params": params}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _sentence_of(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    try:
        rebuilt = Text(data["msgid"], **{k: _sentence_of(v) for k, v in data["params"].items()})
    except (KeyError, ValueError, TypeError, IndexError):
        return data["text"]
    return rebuilt if rebuilt == data["text"] else data["text"]  # a parameter lost its type


def outcome_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "status": outcome.status.value,
            "engine": outcome.engine,
            "source_digest": outcome.source_digest,
            "target_digest": outcome.target_digest,
            "bytes": outcome.bytes,
            "seconds": outcome.seconds,
            "error": _sentence_json(outcome.error),
            "referrers": [[r.digest, r.artifact_type, r.kind.value] for r in outcome.referrers],
            "artifact": outcome.artifact.value if outcome.artifact else None,
            "suggestions": list(outcome.suggestions),
            "not_before": outcome.not_before,
        }
    )


def outcome_of(text: str) -> Outcome:
    data = json.loads(text)
    return Outcome(
        ItemStatus(data["status"]),
        engine=data["engine"],
        source_digest=data["source_digest"],
        target_digest=data["target_digest"],
        bytes=data["bytes"],
        seconds=data["seconds"],
        error=_sentence_of(data["error"]),
        referrers=tuple(Referrer(d, t, ReferrerKind(k)) for d, t, k in data["referrers"]),
        artifact=ArtifactKind(data["artifact"]) if data["artifact"] else None,
        suggestions=tuple(data["suggestions"]),
        not_before=data.get("not_before"),
    )
