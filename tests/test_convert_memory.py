"""`dfk convert` streams: peak memory on a 2000-frame clip stays near that of a 200-frame clip."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepfake_cli.media.synthetic import make_clip, write_clip

# Runs one conversion in a fresh interpreter and prints how far its resident memory rose above
# the level before converting (sampled every 5 ms from /proc/self/status).
_MEASURE = textwrap.dedent("""
    import sys, threading, time
    from deepfake_cli.convert import convert

    def rss_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.005)

    before = rss_kb()
    sampler = threading.Thread(target=sample)
    sampler.start()
    summary = convert(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
    done.set()
    sampler.join()
    print(summary.results[0].frames, summary.results[0].swapped, peak[0] - before)
""")


def _rss_growth_kb(clip: Path, out: Path, model_dir: Path) -> tuple[int, int, int]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(clip), str(out), str(model_dir)],
                          capture_output=True, text=True, check=True)
    frames, swapped, growth = (int(v) for v in done.stdout.split())
    return frames, swapped, growth


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_video_length(tmp_path: Path, tiny_swap_model: Path) -> None:
    cycle = make_clip("astronaut", 100, (128, 96), seed=4).frames
    short = write_clip(tmp_path / "short.mp4", [cycle[i % 100] for i in range(200)], audio=True)
    long = write_clip(tmp_path / "long.mp4", [cycle[i % 100] for i in range(2000)], audio=True)
    frames_short, swapped_short, growth_short = _rss_growth_kb(short, tmp_path / "short_out.mp4", tiny_swap_model)
    frames_long, swapped_long, growth_long = _rss_growth_kb(long, tmp_path / "long_out.mp4", tiny_swap_model)
    assert (frames_short, frames_long) == (200, 2000)
    assert swapped_short >= 180 and swapped_long >= 1800
    assert growth_long - growth_short < 20 * 1024, (growth_short, growth_long)
