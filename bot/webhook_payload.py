"""What a webhook delivery says about one finished image: the audit row and the pull
commands the chat answer gave (:mod:`mirror.webhooks` sends it, signed)."""

from __future__ import annotations

import json

from bot.render import RenderOptions, commands
from mirror.audit import AuditRow
from mirror.models import Item, Job
from mirror.webhooks import Payload


def webhook_payload(options: RenderOptions) -> Payload:
    """The store's outbox payload: ``{"audit": ROW, "pull": [COMMAND, ...]}`` (no commands
    for an image that did not land)."""

    def payload(job: Job, item: Item) -> str:
        pull = commands(item, options) if item.status.ok else []
        return json.dumps({"audit": AuditRow.of(job, item).as_json(), "pull": pull})

    return payload
