"""Unit tests of convert's streaming pipeline and provenance labels."""

from __future__ import annotations

import sys
import threading
import time

import cv2
import numpy as np
import pytest

from deepfake_cli.media.pipeline import Stage, StageTimes, run_pipeline
from deepfake_cli.media.provenance import encode_tagged_image, stamp_watermark


def _no_pipeline_threads_left(before: int) -> bool:
    for _ in range(50):
        if threading.active_count() <= before:
            return True
        time.sleep(0.02)
    return False


def test_items_pass_every_stage_in_order_and_batches_are_bounded() -> None:
    batches: list[int] = []

    def double(items: list[dict]) -> None:
        for item in items:
            item["v"] *= 2

    def batched(items: list[dict]) -> None:
        batches.append(len(items))
        time.sleep(0.002)
        for item in items:
            item["v"] += 1

    times = StageTimes()
    stages = [Stage("double", double), Stage("model", batched, batch=4), Stage("slow", lambda items: time.sleep(0.001))]
    out = [item["v"] for item in run_pipeline(({"v": i} for i in range(50)), stages, depth=2, times=times)]
    assert out == [2 * i + 1 for i in range(50)]
    assert max(batches) <= 4 and sum(batches) == 50
    assert times.items == {"decode": 50, "double": 50, "model": 50, "slow": 50}
    assert set(times.ms_per_item()) == {"decode", "double", "model", "slow"}


def test_threads_switch_every_millisecond_while_running_and_the_interval_is_restored() -> None:
    before = sys.getswitchinterval()
    seen: list[float] = []
    out = list(run_pipeline(iter(range(3)), [Stage("probe", lambda items: seen.append(sys.getswitchinterval()))]))
    assert out == [0, 1, 2] and seen and max(seen) <= 0.001
    assert sys.getswitchinterval() == before


def test_overlapping_pipelines_keep_fast_switching_until_the_last_one_ends() -> None:
    before = sys.getswitchinterval()
    first = run_pipeline(iter(range(10)), [Stage("a", lambda items: None)])
    second = run_pipeline(iter(range(10)), [Stage("b", lambda items: None)])
    next(first), next(second)
    first.close()
    assert sys.getswitchinterval() <= 0.001
    second.close()
    assert sys.getswitchinterval() == before
    failing = run_pipeline(iter(range(3)), [Stage("boom", lambda items: 1 / 0)])
    with pytest.raises(ZeroDivisionError):
        list(failing)
    assert sys.getswitchinterval() == before


def test_memory_is_bounded_by_the_queues() -> None:
    """The source never runs more than the queue capacities ahead of the consumer."""
    produced = 0

    def source():
        nonlocal produced
        for i in range(200):
            produced += 1
            yield i

    ahead = 0
    for consumed, _ in enumerate(run_pipeline(source(), [Stage("a", lambda x: None), Stage("b", lambda x: None, 3)],
                                              depth=2), start=1):
        time.sleep(0.001)
        ahead = max(ahead, produced - consumed)
    # queues (2 + 3 + 2) + items held by the threads: source 1, stage a 1, stage b a batch of 3
    assert ahead <= (2 + 3 + 2) + (1 + 1 + 3)


def test_an_error_in_a_stage_stops_every_thread_and_reaches_the_caller() -> None:
    before = threading.active_count()

    def boom(items: list[int]) -> None:
        if items[0] == 7:
            raise RuntimeError("stage broke")

    with pytest.raises(RuntimeError, match="stage broke"):
        list(run_pipeline(iter(range(10_000)), [Stage("ok", lambda x: None), Stage("boom", boom)]))
    assert _no_pipeline_threads_left(before)


def test_an_error_in_the_source_reaches_the_caller_and_closing_early_stops_threads() -> None:
    before = threading.active_count()

    def broken():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(run_pipeline(broken(), [Stage("s", lambda x: None)]))
    stream = run_pipeline(iter(range(10_000)), [Stage("s", lambda x: None)])
    assert next(stream) == 0
    stream.close()
    assert _no_pipeline_threads_left(before)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_images_carry_the_provenance_text_and_still_decode(suffix: str) -> None:
    image = np.full((32, 48, 3), 120, np.uint8)
    data = encode_tagged_image(image, suffix, "Synthetic media (deepfake): test")
    assert b"Synthetic media (deepfake): test" in data
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (32, 48, 3)


def test_watermark_marks_only_the_bottom_left_corner() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    stamp_watermark(frame)
    changed = np.argwhere(np.any(frame != 128, axis=2))
    assert len(changed) > 100
    assert changed[:, 0].min() > 240 * 0.8 and changed[:, 1].max() < 320 * 0.8
