"""Reading one blob from the source, in order: one stream that resumes where it was cut, or,
for a large blob on a slow link, several concurrent ``Range`` reads (issue 11 §2), as many as
the link is measured to be worth (issue 24).

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

How many streams: a link may cap each connection (more streams add up) or the whole link (more
streams only share it). :class:`Streams` measures, per source registry, the rate every blob
read from it adds up to, and lets a reader open more streams only while that rate grows: a
trial opens two streams (then twice as many as the last that paid), and when the streams it
opened bring less than half a stream's worth each (what the streams before them averaged; half,
because a new stream is still starting when it is measured), the link is full: the extra
streams finish their part and end, and nobody opens more until a stream ends or the rate falls.
``MIRROR_BLOB_STREAMS`` is the ceiling per blob.
Parts are cut as they are claimed, smaller towards the end, so the streams end together.

A connection cut after some progress is resumed from the last byte received
(``Range: bytes=N-``), as containers/image's ``bodyReader`` does. A failure that made no
progress is the engine's to retry (its one loop), so resuming never multiplies its attempts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from mirror.engines.registry.client import RegistryClient
from mirror.errors import Refused, TimedOut, Transient, Unreachable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
"""Reads from the network and the spool, and the chunks handed on, are at most this long."""

_ALIGN = 64 << 10
"""Parts are cut at multiples of this."""

_SPOOL_WRITE = 256 << 10
"""A worker writes its part to the spool in pieces this long: few thread hops, and little
memory for eight blobs of six streams each."""

_PILOT_TICK = 0.05
"""How often a split blob asks whether one more stream would pay."""

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
    probe: float = 0.2
    split_after: float = 2.0
    spool_dir: Path | None = None
    measured: bool = True
    """Open streams as :class:`Streams` finds them worth it, up to ``streams``; False opens
    ``streams`` at once (tests that count parts)."""

    def part_for(self, size: int) -> int:
        """Equal parts, as many for each stream, none over ``part_size`` (so the spool stays
        bounded): every stream reads the same bytes and all end together. 64 KiB aligned."""
        rounds = -(-size // (self.streams * self.part_size))
        part = max(64 << 10, -(-size // (self.streams * rounds)))
        return -(-part // (64 << 10)) * (64 << 10)


_FIRST_STEP = 2
"""Streams the first trial opens: on a link whose connections are capped at a third of it
(a common shape) two more fill it at once, which saves a trial's time; on a full link they
cost a part's request each, once."""


class Streams:
    """The rate of every blob stream from one registry, and whether one more would add to it.

    ``window`` is how long a rate is measured over; a trial is judged ``window`` after its
    streams delivered their first bytes. ``clock`` is for tests.
    """

    def __init__(
        self,
        *,
        window: float = 0.25,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._retry_after = retry_after
        self._clock = clock
        self._received = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(clock(), 0)])
        self.open = 0
        """Streams reading from the registry now (every blob's)."""
        self._trial: _Trial | None = None
        self.limit: int | None = None
        """Streams the link was found to be worth (None: no limit found yet)."""
        self._limit_rate = 0.0
        self._limit_at = 0.0
        self._step = _FIRST_STEP
        """Streams the next trial opens: two, doubled after each that paid, one once full."""
        self._opened_at = -1e9

    def received(self, size: int) -> None:
        now = self._clock()
        self._received += size
        if now - self._samples[-1][0] < 0.01:
            self._samples[-1] = (self._samples[-1][0], self._received)
        else:
            self._samples.append((now, self._received))
        horizon = now - 8 * self._window
        while len(self._samples) > 2 and self._samples[1][0] < horizon:
            self._samples.popleft()

    def rate(self, since: float) -> float:
        """Bytes per second received from ``since`` until now."""
        now = self._clock()
        before = self._samples[0][1]
        for at, total in self._samples:
            if at > since:
                break
            before = total
        return (self._received - before) / max(now - since, 1e-3)

    def unused(self) -> None:
        """A stream granted to the trial out found nothing to read: judge it without."""
        trial = self._trial
        if trial is not None and trial.waiting > 0:
            trial.waiting -= 1
            trial.added -= 1
            if trial.added <= 0:
                self._trial = None
            elif trial.started_streams >= trial.added and trial.flowing is None:
                trial.flowing = self._clock()

    def opened(self) -> _Trial | None:
        """A stream opens; the trial it is part of, if one waits for its streams."""
        if self.open == 0:
            self._opened_at = self._clock()  # from idle: streams are reaching their pace
        self.open += 1
        trial = self._trial
        if trial is None or trial.waiting <= 0:
            return None
        trial.waiting -= 1
        return trial

    def flowing(self, trial: _Trial) -> None:
        """A stream of ``trial`` received its first bytes; once all of them have, the trial's
        rate is measured from then on."""
        trial.started_streams += 1
        if trial.started_streams >= trial.added:
            trial.flowing = self._clock()

    def closed(self) -> None:
        self.open -= 1

    def more(self, room: int) -> int:
        """How many streams to open now, up to ``room`` (0: none). While a trial is out, or
        the link is full, none; below a limit found, enough to reach it; else a new trial of
        two (then twice as many as the last that paid; one once the link was found full)."""
        now = self._clock()
        if self._trial is not None and not self._judge(now):
            return 0
        if self._trial is None and now - self._opened_at < 2 * self._window:
            return 0  # the first streams have yet to reach their pace: measure later
        if self.limit is not None:
            if self.open < self.limit:
                return min(room, self.limit - self.open)  # known to help: no trial needed
            fell = self.rate(now - self._window) < 0.8 * self._limit_rate
            if not fell and now - self._limit_at < self._retry_after:
                return 0
        added = min(room, self._step)
        self._trial = _Trial(now, self.rate(now - self._window), self.open, added)
        log.debug(
            "trying %d more streams (%d open, %.1f MB/s)", added, self.open, self._trial.rate / 1e6
        )
        return added

    def full(self) -> bool:
        """Whether the link was found full with the streams open now (and still is)."""
        if self.limit is None or self.open < self.limit:
            return False
        now = self._clock()
        return self.rate(now - self._window) >= 0.8 * self._limit_rate

    def too_many(self) -> bool:
        """Whether a stream that finished its part should end rather than take another."""
        return self.limit is not None and self.open > self.limit

    def _judge(self, now: float) -> bool:
        """Whether the trial is over (then ``limit`` says what it found)."""
        trial = self._trial
        assert trial is not None
        if trial.flowing is None and now - trial.started > 10 * self._window:
            self._trial = None  # its streams never came (no parts left): nothing learned
            return True
        if trial.flowing is None or now - trial.flowing < self._window:
            return False
        after = self.rate(trial.flowing)
        self._trial = None
        per_stream = trial.rate / max(trial.open, 1)
        gained = after - trial.rate
        paid = gained / per_stream if per_stream else trial.added
        if paid < 0.5 * trial.added:  # new streams start slow (a connection, TCP slow start)
            # Full: keep the streams that brought about a stream's worth each, no more.
            self.limit = max(1, trial.open + max(0, round(paid)))
            self._limit_rate, self._limit_at = after, now
            self._step = 1
            log.debug(
                "link full at %d streams (%.1f MB/s; %d brought %.1f MB/s)",
                self.limit,
                after / 1e6,
                trial.added,
                gained / 1e6,
            )
            return True
        log.debug("%d more streams brought %.1f MB/s", trial.added, gained / 1e6)
        self.limit = None
        self._step = trial.added * 2  # it grew: try twice as many next (slow start)
        return True


@dataclass
class _Trial:
    """Streams opened to see whether they add to the rate, and what it was before them."""

    started: float
    rate: float
    """The rate before it."""
    open: int
    """Streams open before it."""
    added: int
    waiting: int = 0
    """Its streams not opened yet."""
    started_streams: int = 0
    flowing: float | None = None
    """When all its streams had bytes (a new stream needs a connection and a request)."""

    def __post_init__(self) -> None:
        self.waiting = self.added


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
        streams: Streams | None = None,
    ) -> None:
        self._streams = streams
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self.done = start
        self.end = end
        self._widen = widen
        self.honours_range: bool | None = None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        streams = self._streams
        trial = streams.opened() if streams is not None else None
        try:
            async for chunk in self._resumed():
                if streams is not None:
                    streams.received(len(chunk))
                    if trial is not None:
                        streams.flowing(trial)
                        trial = None
                yield chunk
        finally:
            if streams is not None:
                streams.closed()

    async def _resumed(self) -> AsyncGenerator[bytes, None]:
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
    a spool file, the reader takes them in order as soon as they have bytes.

    Parts are cut as they are claimed. With ``shrinking``, a part is the unclaimed rest
    divided among the streams reading (at most ``part``, at least an eighth of it), so the
    last parts are small and the streams end together (guided self-scheduling): no stream
    reads a long last part alone while the link idles. Otherwise every part is ``part``
    long."""

    def __init__(
        self,
        reader: BlobReader,
        start: int,
        size: int,
        part: int,
        slots: int,
        spool: IO[bytes],
        *,
        shrinking: bool = False,
    ) -> None:
        self._reader = reader
        self._starts: list[int] = []
        self._lengths: list[int] = []
        self._filled: list[int] = []
        self._next = start
        """The first byte no part claimed yet."""
        self._size = size
        self._part = part
        self._smallest = max(_ALIGN, part // 8 // _ALIGN * _ALIGN) if shrinking else part
        self._ring = slots * part
        """The spool's size: a ring of bytes, at blob offset ``o`` position ``(o - start) %
        ring``; a part is read only once the ring has room for all of it."""
        self._start = start
        self._fd = spool.fileno()
        self._handed = start
        """The blob offset up to which bytes were handed on: their room may be filled again."""
        self._failure: BaseException | None = None
        self._changed = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []
        self.live = 0
        """Workers reading now."""
        self.most = 0
        """The most workers that read at once."""

    def add_worker(self) -> None:
        self.live += 1
        self.most = max(self.most, self.live)
        self.tasks.append(asyncio.create_task(self._work()))

    def unclaimed(self) -> bool:
        return self._next < self._size and self._failure is None

    def _claim(self) -> int | None:
        """The next part, cut now: its index, or None when every byte is claimed."""
        rest = self._size - self._next
        if rest <= 0:
            return None
        share = -(-rest // max(1, self.live)) if self._smallest < self._part else self._part
        length = min(self._part, max(self._smallest, -(-share // _ALIGN) * _ALIGN))
        if rest - length < self._smallest:
            length = rest if rest <= self._part else length  # no crumb of a part at the end
        length = min(length, rest)
        self._starts.append(self._next)
        self._lengths.append(length)
        self._filled.append(0)
        self._next += length
        return len(self._starts) - 1

    async def _work(self) -> None:
        claimed = False
        try:
            while (k := self._claim()) is not None:
                claimed = True
                async with self._changed:
                    self._changed.notify_all()  # the reader may wait for this part to exist
                    end = self._starts[k] + self._lengths[k]
                    while end - self._handed > self._ring and self._failure is None:
                        await self._changed.wait()
                start = self._starts[k]
                cursor = self._reader.cursor(start, start + self._lengths[k])
                await self._fill(k, cursor.chunks())
                if self.live > 1 and self._reader.too_many():
                    break  # the link is full: fewer streams
        except Exception as exc:
            async with self._changed:
                self._failure = self._failure or exc
                self._changed.notify_all()
        finally:
            self.live -= 1
            if not claimed:
                self._reader.unused()

    async def _fill(self, k: int, chunks: AsyncGenerator[bytes, None]) -> None:
        """Write part ``k`` into its slot piece by piece, telling the reader as it goes."""
        buffer = bytearray()
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= _SPOOL_WRITE:
                    await self._put(k, buffer)
        if buffer:
            await self._put(k, buffer)

    def _write(self, at: int, data: bytes | bytearray) -> None:
        """Write ``data`` of blob offset ``at`` into the ring (in two pieces where it wraps)."""
        position = (at - self._start) % self._ring
        view = memoryview(data)
        first = min(len(view), self._ring - position)
        os.pwrite(self._fd, view[:first], position)
        if first < len(view):
            os.pwrite(self._fd, view[first:], 0)

    def _read(self, at: int, size: int) -> bytes:
        position = (at - self._start) % self._ring
        return os.pread(self._fd, min(size, self._ring - position), position)

    async def _put(self, k: int, buffer: bytearray) -> None:
        await asyncio.to_thread(self._write, self._starts[k] + self._filled[k], buffer)
        async with self._changed:
            self._filled[k] += len(buffer)
            self._changed.notify_all()
        buffer.clear()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        k = 0
        while True:
            async with self._changed:
                while k >= len(self._starts) and self._next < self._size:
                    if self._failure is not None:
                        raise self._failure
                    await self._changed.wait()
            if k >= len(self._starts):
                return
            start, done, length = self._starts[k], 0, self._lengths[k]
            while done < length:
                async with self._changed:
                    while self._filled[k] <= done and self._failure is None:
                        await self._changed.wait()
                    if self._filled[k] <= done and self._failure is not None:
                        raise self._failure
                    have = self._filled[k]
                while done < have:
                    data = await asyncio.to_thread(
                        self._read, start + done, min(_CHUNK, have - done)
                    )
                    done += len(data)
                    yield data
                    async with self._changed:
                        self._handed = start + done  # its room may be filled again
                        self._changed.notify_all()
            k += 1


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
        streams: Streams | None = None,
    ) -> None:
        self._streams = streams if ranged.measured else None
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self._size = size
        self._ranged = ranged
        self._parts: _Parts | None = None
        self._head_joined = False
        self._pilot: asyncio.Task[None] | None = None
        self._spool: IO[bytes] | None = None
        self.streams_used = 1
        """How many streams read the blob (1 unless it was split)."""

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._pilot is not None:
            self._pilot.cancel()
            await asyncio.gather(self._pilot, return_exceptions=True)
            self._pilot = None
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
            self._client,
            self._registry,
            self._repository,
            self._digest,
            start,
            end,
            widen=widen,
            streams=self._streams,
        )

    def too_many(self) -> bool:
        return self._streams is not None and self._streams.too_many()

    def unused(self) -> None:
        if self._streams is not None:
            self._streams.unused()

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
        rate: float | None = None
        async with contextlib.aclosing(head.chunks()) as stream:
            async for chunk in stream:
                yield chunk
                if decided:
                    continue
                if first is None:
                    first = (clock(), head.done)
                elif clock() - first[0] >= ranged.probe:
                    decided = True
                    rate = (head.done - first[1]) / (clock() - first[0])
                    await self._maybe_split(head, rate)
        if head.end is None or head.end >= size:
            return  # the source ignored Range: the head read the whole blob
        self._head_joined = True
        if self._parts is None and (not decided or self._streams is not None):
            # Fast, or the link was full until now: it may have room now.
            await self._maybe_split(head, rate)
        if self._parts is None:
            async for chunk in self.cursor(head.end, None).chunks():
                yield chunk
            return
        self._parts.add_worker()  # the head's stream, free now, takes parts too
        try:
            async for chunk in self._parts.chunks():
                yield chunk
        finally:
            self.streams_used = self._parts.most
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
        if self._streams is None:
            parts = self._split(head)
            for _ in range(ranged.streams - 1):
                parts.add_worker()
        elif self._head_joined:  # the head is done: split unless the link is known full
            if not self._streams.full():
                self._pilot = asyncio.create_task(self._steer(self._split(head), self._streams))
        elif self._pilot is None:
            self._pilot = asyncio.create_task(self._steer(None, self._streams, head))
        log.debug(
            "%s: may split from byte %d (first stream at %.1f MB/s)",
            self._digest[:19],
            head.end,
            (rate or 0) / 1e6,
        )

    def _split(self, head: _Cursor) -> _Parts:
        """Cut the rest of the blob (after the head's part) into parts, spooled."""
        assert head.end is not None and self._size is not None
        ranged = self._ranged
        spool = self._spool = self._open_spool()
        slots = ranged.streams + 1  # every stream busy while the oldest part is handed on
        self._parts = _Parts(
            self,
            head.end,
            self._size,
            head.end,  # the head's part is the longest part
            slots,
            spool,
            shrinking=self._streams is not None,
        )
        return self._parts

    async def _steer(
        self, parts: _Parts | None, streams: Streams, head: _Cursor | None = None
    ) -> None:
        """Open streams for the rest of the blob as the link's measure says they pay, up to
        the ceiling (the head's stream counts; it joins when its own part is done). The blob
        is split only when a first stream is granted: on a full link it never is, and its
        rest is read by the head's stream alone, straight through."""
        while parts is None or parts.unclaimed():
            if parts is None and self._head_joined:
                return  # the head finished first: it reads the rest itself
            live = parts.live if parts is not None else 0
            room = self._ranged.streams - live - (0 if self._head_joined else 1)
            granted = streams.more(room) if room > 0 else 0
            if granted and parts is None:
                assert head is not None
                parts = self._split(head)
            for _ in range(granted):
                assert parts is not None
                parts.add_worker()
            await asyncio.sleep(_PILOT_TICK)

    def _open_spool(self) -> IO[bytes]:
        directory = self._ranged.spool_dir
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(prefix="blob-", dir=directory)
