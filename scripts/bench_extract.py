"""Benchmark `dfk extract` at 640x480: prints one JSON line.

Fields: frames_per_s, ms per frame for detection, landmarks and everything else
(decode + alignment + PNG writing), and overhead_fraction = share of wall time outside
detector and landmarker inference.

With ``--reference`` extract keeps only the person of a reference image (the still the clip is made
of) and the line adds the identity matching's cost: identity_faces (descriptors computed),
identity_ms_per_face and identity_fraction (share of wall time); other_ms and overhead_fraction
then include it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepfake_cli.extract import ExtractOptions, extract
from deepfake_cli.faces import create_backend
from deepfake_cli.faces.finder import FaceFinder
from deepfake_cli.faces.identity import IdentityMatcher
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import load_still, make_clip, write_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reference", action="store_true",
                        help="extract with --reference (the clip's still) and report the identity matching's cost")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "bench.mp4", make_clip("grace_hopper", args.frames, (640, 480), seed=3).frames)
        options = ExtractOptions(size=args.size)
        backend = create_backend("offline")
        if args.reference:
            options.reference = str(Path(tmp) / "reference.png")
            write_image(options.reference, load_still("grace_hopper"))
            IdentityMatcher.from_reference(options.reference, backend)  # loads dlib's model before timing
        warm = FaceFinder(backend, options)
        warm.find(make_clip("grace_hopper", 1, (640, 480)).frames[0])
        start = time.perf_counter()
        summary = extract([clip], Path(tmp) / "out", options, progress=False, backend=backend)
        wall = time.perf_counter() - start
    frames = summary.frames
    inference = summary.detect_seconds + summary.landmark_seconds
    figures = {
        "frames": frames,
        "faces": summary.faces,
        "frames_per_s": round(frames / wall, 2),
        "detect_ms": round(1000 * summary.detect_seconds / frames, 2),
        "landmarks_ms": round(1000 * summary.landmark_seconds / frames, 2),
        "other_ms": round(1000 * (wall - inference) / frames, 2),
        "overhead_fraction": round((wall - inference) / wall, 4),
    }
    if args.reference:
        # one descriptor per face found (the clip holds one person): the faces counted are the frames'
        faces_seen = summary.faces + summary.others + summary.duplicates
        figures.update({
            "identity_faces": faces_seen,
            "identity_ms_per_face": round(1000 * summary.identity_seconds / max(faces_seen, 1), 2),
            "identity_fraction": round(summary.identity_seconds / wall, 4),
        })
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
