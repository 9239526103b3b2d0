"""Aggregation of engine events into what a user sees: bytes, blobs, speed, ETA."""

from mirror.progress import BlobDone, BlobProgress, ProgressTracker, Stage, StageChanged


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bytes_and_blobs_add_up_across_layers() -> None:
    tracker = ProgressTracker()
    tracker.feed(StageChanged(Stage.COPYING))
    tracker.feed(BlobProgress("a", 10, 100))
    tracker.feed(BlobProgress("b", 50, 200))
    snap = tracker.snapshot()
    assert (snap.stage, snap.done, snap.total) == (Stage.COPYING, 60, 300)
    assert (snap.blobs_done, snap.blobs_total) == (0, 2)


def test_already_existing_layer_counts_as_done() -> None:
    tracker = ProgressTracker()
    tracker.feed(StageChanged(Stage.COPYING))
    tracker.feed(BlobProgress("a", 10, 100))
    tracker.feed(BlobDone("cached"))  # "Already exists": no size known
    tracker.feed(BlobDone("a"))
    snap = tracker.snapshot()
    assert snap.done == 100 and snap.total == 100
    assert snap.blobs_done == snap.blobs_total == 2


def test_progress_never_goes_backwards_within_a_blob() -> None:
    tracker = ProgressTracker()
    tracker.feed(BlobProgress("a", 80, 100))
    tracker.feed(BlobProgress("a", 20, 100))
    assert tracker.snapshot().done == 80


def test_speed_and_eta_from_the_recent_window() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(window_seconds=5, clock=clock)
    tracker.feed(StageChanged(Stage.COPYING))
    tracker.feed(BlobProgress("a", 0, 1000))
    clock.now += 2
    tracker.feed(BlobProgress("a", 200, 1000))
    snap = tracker.snapshot()
    assert snap.bytes_per_second == 100
    assert snap.eta_seconds == 8
    # A stall longer than the window shows as a slower speed, not the early average.
    clock.now += 20
    tracker.feed(BlobProgress("a", 210, 1000))
    assert tracker.snapshot().bytes_per_second is not None
    assert tracker.snapshot().bytes_per_second < 10


def test_a_new_stage_starts_a_new_count() -> None:
    tracker = ProgressTracker()
    tracker.feed(StageChanged(Stage.COPYING))
    tracker.feed(BlobDone("a", 100))
    tracker.feed(StageChanged(Stage.PUSHING))
    snap = tracker.snapshot()
    assert (snap.stage, snap.done, snap.total, snap.blobs_total) == (Stage.PUSHING, 0, None, 0)
