"""Copies as procrastinate tasks on a PostgreSQL ``MIRROR_DB`` (issue 16).

The chat front never copies then: its ``QueueCopier`` (:mod:`mirror.queue.front`) queues each
copy (or joins the identical one already queued or running) and waits for its outcome, while
any number of ``mirror-bot worker`` processes, on any machine that reaches PostgreSQL, the
sources and the target, run them with their own engines (:mod:`mirror.queue.worker`).

- **Coalescing**: a copy's ``queueing_lock`` is its source, target and platform, so one such
  copy waits at a time; its ``lock`` is its target, so two copies never write one target at
  once. A front that finds the identical copy queued or running follows that one.
- **Progress**: a worker sends what its engine reports, at most every ``PROGRESS_EVERY``
  seconds (stages and finished blobs always), with PostgreSQL ``NOTIFY``, and keeps the state
  so far in ``copy_progress``; the front ``LISTEN``\\ s and feeds its live messages as if it
  copied itself, starting from that state when it joins a copy already running.
- **Outcomes** are rows of ``copy_outcomes`` (a store migration), written and announced in
  one statement; the front also reads them every ``POLL_SECONDS``, so a notification lost to
  a reconnect costs seconds, and a front restarted mid-copy finds the copy by its lock and
  still gets its outcome.
- **Faults**: workers beat a heartbeat; every ``STALLED_SCAN_SECONDS`` each of them looks for
  copies whose worker stopped beating (killed, machine gone) and puts them back in the queue,
  where another worker finishes them (procrastinate's stalled-job retry).
- **Connections**: one pool per process, the store's; procrastinate's connector is opened on
  it, and LISTEN loops and advisory locks borrow a connection from it for their length.

:mod:`mirror.queue.app` holds procrastinate's app, the names and timings above, the schema and
LISTEN; :mod:`mirror.queue.codec` the wire format; :mod:`mirror.queue.watching` the watches'
periodic check and the front's posting of what moved. This package knows no chat: it moves
:class:`~mirror.engines.base.CopyRequest`\\ s and :class:`~mirror.models.Outcome`\\ s.
"""
