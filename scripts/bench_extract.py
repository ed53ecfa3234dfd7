"""Benchmark `dfk extract` at 640x480: prints one JSON line.

Fields: frames_per_s, ms per frame for detection, landmarks and everything else
(decode + alignment + PNG writing), and overhead_fraction = share of wall time outside
detector and landmarker inference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepfake_cli.extract import ExtractOptions, FaceFinder, extract
from deepfake_cli.faces import create_backend
from deepfake_cli.media.synthetic import make_clip, write_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "bench.mp4", make_clip("grace_hopper", args.frames, (640, 480), seed=3).frames)
        options = ExtractOptions(size=args.size)
        backend = create_backend("offline")
        warm = FaceFinder(backend, options)
        warm.find(make_clip("grace_hopper", 1, (640, 480)).frames[0])
        start = time.perf_counter()
        summary = extract([clip], Path(tmp) / "out", options, progress=False, backend=backend)
        wall = time.perf_counter() - start
    frames = summary.frames
    inference = summary.detect_seconds + summary.landmark_seconds
    print(json.dumps({
        "frames": frames,
        "faces": summary.faces,
        "frames_per_s": round(frames / wall, 2),
        "detect_ms": round(1000 * summary.detect_seconds / frames, 2),
        "landmarks_ms": round(1000 * summary.landmark_seconds / frames, 2),
        "other_ms": round(1000 * (wall - inference) / frames, 2),
        "overhead_fraction": round((wall - inference) / wall, 4),
    }))


if __name__ == "__main__":
    main()
