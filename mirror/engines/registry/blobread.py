"""Reading one blob from the source, in order: one stream that resumes where it was cut, or,
for a large blob on a slow link, several concurrent ``Range`` reads (issue 11 §2).

One TCP stream over a long, lossy link carries a few MB/s however wide the pipe; parallel
streams add up. A large blob is first read as one ranged stream of its first part, handed on
as it arrives. If that stream is slow (the rest would take longer than ``split_after`` at its
rate), the rest of the blob is cut in parts that ``streams - 1`` workers fetch at once with
``Range`` requests, each into its slot of a spool file (a ring of parts under the data
directory, unlinked from the start); the first stream joins them when its part is done, and
the bytes are handed on in order as soon as the part they belong to has them. Memory stays
flat however large the blob, the disk holds at most a ring of ``streams + 1`` parts (224 MiB
with the defaults), and a fast source (the
same machine, a LAN) never pays for a spool it does not need. A source that ignores ``Range``
(answers 200) is read as one stream.

A connection cut after some progress is resumed from the last byte received
(``Range: bytes=N-``), as containers/image's ``bodyReader`` does. A failure that made no
progress is the engine's to retry (its one loop), so resuming never multiplies its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from mirror.engines.registry.client import RegistryClient
from mirror.errors import Refused, TimedOut, Transient, Unreachable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
"""Reads from the network and the spool, and the chunks handed on, are at most this long."""

_SPOOL_WRITE = 256 << 10
"""A worker writes its part to the spool in pieces this long: few thread hops, and little
memory for eight blobs of six streams each."""

RESUME_AFTER = 256 << 10
"""A cut connection is resumed when it delivered at least this many bytes since it was
opened; a connection that fails sooner is not progressing, and the engine retries the unit."""

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Ranged:
    """How a large blob is read: blobs of ``threshold`` bytes or more are split when the first
    ``probe`` seconds of their stream say the rest would take over ``split_after`` seconds;
    then ``streams`` concurrent ranged reads of parts of at most ``part_size`` bytes, spooled
    under ``spool_dir`` (None: the system's temporary directory)."""

    streams: int = 6
    part_size: int = 32 << 20
    threshold: int = 16 << 20
    probe: float = 0.3
    split_after: float = 2.0
    spool_dir: Path | None = None

    def part_for(self, size: int) -> int:
        """Equal parts, as many for each stream, none over ``part_size`` (so the spool stays
        bounded): every stream reads the same bytes and all end together. 64 KiB aligned."""
        rounds = -(-size // (self.streams * self.part_size))
        part = max(64 << 10, -(-size // (self.streams * rounds)))
        return -(-part // (64 << 10)) * (64 << 10)


def _lost(registry: str, exc: BaseException) -> Transient:
    if isinstance(exc, TimeoutError):
        return TimedOut(registry, "stalled mid-blob")
    return Unreachable(registry, f"lost mid-blob: {type(exc).__name__}")


class _Cursor:
    """Bytes ``[done, end)`` of a blob (``end`` None: to its end), resumed after a cut.

    ``honours_range`` is what the first ranged answer said: True for 206; False for 200, when
    the source sends the whole blob: the bytes before ``done`` are skipped, and a cursor that
    may ``widen`` reads the whole blob from then on (the one-stream fallback).
    """

    def __init__(
        self,
        client: RegistryClient,
        registry: str,
        repository: str,
        digest: str,
        start: int,
        end: int | None,
        *,
        widen: bool = False,
    ) -> None:
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self.done = start
        self.end = end
        self._widen = widen
        self.honours_range: bool | None = None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        opened_at = self.done
        while self.end is None or self.done < self.end:
            try:
                async for chunk in self._read():
                    yield chunk
                return
            except Transient as exc:
                error: Transient = exc
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                error = _lost(self._registry, exc)
            if self.done - opened_at < RESUME_AFTER:
                raise error
            log.info("resuming %s at byte %d after %s", self._digest[:19], self.done, error.detail)
            opened_at = self.done

    async def _read(self) -> AsyncIterator[bytes]:
        ranged = self.done > 0 or self.end is not None
        async with self._client.open_blob(
            self._registry, self._repository, self._digest, start=self.done, end=self.end
        ) as resp:
            skip = 0
            if resp.status == 206:
                found = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if found is None or int(found.group(1)) != self.done:
                    raise Refused(
                        self._registry, 206, f"answered a range other than from byte {self.done}"
                    )
                if self.honours_range is None:
                    self.honours_range = True
            elif ranged:
                if self.honours_range is None:
                    self.honours_range = False
                    if self._widen:
                        self.end = None
                skip = self.done  # the whole blob again: skip what we have
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                if self.end is not None and self.done + len(chunk) >= self.end:
                    chunk = chunk[: self.end - self.done]
                    self.done += len(chunk)
                    yield chunk
                    return
                self.done += len(chunk)
                yield chunk
            if self.end is not None and self.done < self.end:
                raise Unreachable(self._registry, "the blob ended early")


class _Parts:
    """Bytes ``[start, size)`` of a blob in parts: workers fill them into a ring of slots in
    a spool file, the reader takes them in order as soon as they have bytes."""

    def __init__(
        self, reader: BlobReader, start: int, size: int, part: int, slots: int, spool: IO[bytes]
    ) -> None:
        self._reader = reader
        self._starts = range(start, size, part)
        self._size = size
        self._part = part
        self._slots = min(slots, len(self._starts))
        self._fd = spool.fileno()
        self._filled = [0] * len(self._starts)
        self._handed_on = 0
        """Parts handed on whole: their slots may be filled again."""
        self._claims = itertools.count()
        self._failure: BaseException | None = None
        self._changed = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []

    def add_worker(self) -> None:
        self.tasks.append(asyncio.create_task(self._work()))

    def _length(self, k: int) -> int:
        return min(self._part, self._size - self._starts[k])

    async def _work(self) -> None:
        try:
            while (k := next(self._claims)) < len(self._starts):
                async with self._changed:
                    while k >= self._handed_on + self._slots:
                        await self._changed.wait()
                start = self._starts[k]
                cursor = self._reader.cursor(start, start + self._length(k))
                await self._fill(k, cursor.chunks())
        except Exception as exc:
            async with self._changed:
                self._failure = self._failure or exc
                self._changed.notify_all()

    async def _fill(self, k: int, chunks: AsyncGenerator[bytes, None]) -> None:
        """Write part ``k`` into its slot piece by piece, telling the reader as it goes."""
        offset = (k % self._slots) * self._part
        buffer = bytearray()
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= _SPOOL_WRITE:
                    await self._put(k, offset, buffer)
        if buffer:
            await self._put(k, offset, buffer)

    async def _put(self, k: int, offset: int, buffer: bytearray) -> None:
        await asyncio.to_thread(os.pwrite, self._fd, buffer, offset + self._filled[k])
        async with self._changed:
            self._filled[k] += len(buffer)
            self._changed.notify_all()
        buffer.clear()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for k in range(len(self._starts)):
            offset = (k % self._slots) * self._part
            done, length = 0, self._length(k)
            while done < length:
                async with self._changed:
                    while self._filled[k] <= done and self._failure is None:
                        await self._changed.wait()
                    if self._filled[k] <= done and self._failure is not None:
                        raise self._failure
                    have = self._filled[k]
                while done < have:
                    data = await asyncio.to_thread(
                        os.pread, self._fd, min(_CHUNK, have - done), offset + done
                    )
                    done += len(data)
                    yield data
            async with self._changed:
                self._handed_on = k + 1
                self._changed.notify_all()


class BlobReader:
    """The bytes of one source blob, in order; close it (``async with``) to stop its workers."""

    def __init__(
        self,
        client: RegistryClient,
        registry: str,
        repository: str,
        digest: str,
        size: int | None,
        ranged: Ranged,
    ) -> None:
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self._size = size
        self._ranged = ranged
        self._parts: _Parts | None = None
        self._spool: IO[bytes] | None = None
        self.streams_used = 1
        """How many streams read the blob (1 unless it was split)."""

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._parts is not None:
            for task in self._parts.tasks:
                task.cancel()
            await asyncio.gather(*self._parts.tasks, return_exceptions=True)
            self._parts = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def cursor(self, start: int, end: int | None, *, widen: bool = False) -> _Cursor:
        return _Cursor(
            self._client, self._registry, self._repository, self._digest, start, end, widen=widen
        )

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        size, ranged = self._size, self._ranged
        if size is None or ranged.streams < 2 or size < ranged.threshold:
            async for chunk in self.cursor(0, None).chunks():
                yield chunk
            return
        head = self.cursor(0, ranged.part_for(size), widen=True)
        clock = asyncio.get_running_loop().time
        first: tuple[float, int] | None = None  # (when, bytes) of the first chunk
        decided = False
        async with contextlib.aclosing(head.chunks()) as stream:
            async for chunk in stream:
                yield chunk
                if decided:
                    continue
                if first is None:
                    first = (clock(), head.done)
                elif clock() - first[0] >= ranged.probe:
                    decided = True
                    await self._maybe_split(head, (head.done - first[1]) / (clock() - first[0]))
        if head.end is None or head.end >= size:
            return  # the source ignored Range: the head read the whole blob
        if not decided:
            await self._maybe_split(head, None)
        if self._parts is None:
            async for chunk in self.cursor(head.end, None).chunks():
                yield chunk
            return
        self._parts.add_worker()  # the head's stream, free now, takes parts too
        try:
            async for chunk in self._parts.chunks():
                yield chunk
        finally:
            await self.aclose()

    async def _maybe_split(self, head: _Cursor, rate: float | None) -> None:
        """Split the rest of the blob (after the head's part) when at ``rate`` (bytes/s; None:
        the head finished before the probe ended, which is fast) it would take too long."""
        ranged = self._ranged
        if not head.honours_range or head.end is None or self._size is None:
            return  # the source ignores Range: one stream it is
        rest = self._size - head.end
        if rest <= 0:
            return
        fast = rate is None or rest <= rate * ranged.split_after
        if fast and ranged.split_after > 0:  # 0: always split (tests)
            return
        part = head.end  # the head's part is the first of the equal parts
        spool = self._spool = await asyncio.to_thread(self._open_spool)
        slots = ranged.streams + 1  # every stream busy while the oldest part is handed on
        parts = self._parts = _Parts(self, head.end, self._size, part, slots, spool)
        for _ in range(ranged.streams - 1):
            parts.add_worker()
        self.streams_used = ranged.streams
        log.debug(
            "%s: %d streams from byte %d (first stream at %.1f MB/s)",
            self._digest[:19],
            ranged.streams,
            head.end,
            (rate or 0) / 1e6,
        )

    def _open_spool(self) -> IO[bytes]:
        directory = self._ranged.spool_dir
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(prefix="blob-", dir=directory)
