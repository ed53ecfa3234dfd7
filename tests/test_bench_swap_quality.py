"""scripts/bench_swap_quality.py's pair mode: footage specs and the closed/open mouth picks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_swap_quality.py"
sys.path.insert(0, str(SCRIPT.parent))

import bench_swap_quality  # noqa: E402
from deepfake_cli.media.synthetic import write_clip  # noqa: E402


def test_clip_spec_takes_a_frame_range_with_both_ends_included() -> None:
    assert bench_swap_quality.parse_clip("data/a.mov:48-71") == (Path("data/a.mov"), range(48, 72))
    assert bench_swap_quality.parse_clip("data/a.mov") == (Path("data/a.mov"), None)
    assert bench_swap_quality.parse_clip("C:/x/a.mp4") == (Path("C:/x/a.mp4"), None)


def test_clip_frames_cut_the_range_and_refuse_frames_the_video_lacks(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(6)]
    video = write_clip(tmp_path / "a.mp4", frames)
    picked = bench_swap_quality.clip_frames(f"{video}:2-4")
    assert len(picked) == 3 and abs(float(picked[0].mean()) - 20) < 3
    with pytest.raises(SystemExit, match="does not have"):
        bench_swap_quality.clip_frames(f"{video}:4-9")
    with pytest.raises(SystemExit, match="not found"):
        bench_swap_quality.clip_frames(str(tmp_path / "missing.mp4"))


def test_mouth_picks_show_the_most_closed_then_the_most_open_mouths() -> None:
    gaps = {0: 0.02, 1: 0.30, 2: 0.00, 3: 0.12, 4: 0.25, 5: 0.01}
    assert bench_swap_quality.mouth_picks(gaps) == [2, 5, 4, 1]
    assert bench_swap_quality.mouth_picks({7: 0.1, 8: 0.2}) == [7, 8]
