"""Logging that never prints a secret and names the job of every line written for one.

Lines are ``key=value`` text by default (``ts=... level=INFO logger=mirror.jobs job=ab12cd
msg="..."``) or one JSON object per line with ``MIRROR_LOG_FORMAT=json``, for log shippers.
The job id comes from ``mirror.logcontext.JOB_ID``, which the job service sets for each job's
tasks; lines outside a job carry ``job=-`` (text) or no ``job`` key (JSON).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Literal

from mirror.logcontext import JOB_ID

REDACTED = "***"

LogFormat = Literal["text", "json"]


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self._secrets:
                text = text.replace(secret, REDACTED)
            record.exc_text, record.exc_info = text, None
        return True


class JobIdFilter(logging.Filter):
    """Stamps each record with the job the running task works for (``record.job_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = JOB_ID.get()
        return True


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"ts={self.formatTime(record)} level={record.levelname} logger={record.name} "
            f"job={getattr(record, 'job_id', None) or '-'} msg={json.dumps(record.getMessage())}"
        )
        if record.exc_text:
            line += f" exc={json.dumps(record.exc_text)}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job"] = job_id
        entry["msg"] = record.getMessage()
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    secrets: Iterable[str], *, level: int | str = logging.INFO, fmt: LogFormat = "text"
) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    # Redaction first: it folds a traceback into exc_text, which the formatters print.
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
