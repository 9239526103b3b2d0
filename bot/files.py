"""Files shared in chat (issue 15): read as if their text were pasted after ``/mirror``.

Adapters only say a file is there and how to download it (:class:`bot.chat.SharedFile`);
what is accepted is decided here, once for every platform: text, at most
:data:`MAX_FILE_BYTES`, checked on the size the platform announces before any download and
again on what arrived.
"""

from __future__ import annotations

import math

from bot.chat import ChatUnavailable, SharedFile, Undeliverable
from mirror.errors import MirrorError
from mirror.reference import quote
from mirror.text import Text

MAX_FILE_BYTES = 256_000
"""The longest paste ``/mirror`` reads (``bot.commands``), as a file."""


class FileRefused(MirrorError):
    """The shared file cannot be read as a list of images; one sentence says why."""


def _too_large(file: SharedFile, size: int) -> FileRefused:
    return FileRefused(
        Text(
            "{file} is {size} KB; I read shared files of up to {limit} KB.",
            file=quote(file.name),
            size=math.ceil(size / 1000),
            limit=MAX_FILE_BYTES // 1000,
        )
    )


async def file_text(command: str, file: SharedFile) -> str:
    """The command's text (``/mirror`` when there is none, as in a direct message), then the
    file's text on the next lines."""
    if file.size is not None and file.size > MAX_FILE_BYTES:
        raise _too_large(file, file.size)
    try:
        data = await file.fetch()
    except (ChatUnavailable, Undeliverable, TimeoutError) as exc:
        raise FileRefused(
            Text(
                "I could not download {file} from the chat; share it again.", file=quote(file.name)
            )
        ) from exc
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(file, len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise FileRefused(
            Text(
                "{file} is not a text file; share manifests, compose files or image lists as text.",
                file=quote(file.name),
            )
        )
    head = command.strip() or "/mirror"
    return f"{head}\n{text}"
