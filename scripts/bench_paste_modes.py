"""Seam strength (and the other evaluate figures) for every ``--color`` x ``--blend`` mode of convert.

    python scripts/bench_swap_quality.py --mode pair --minutes 20 --every 10 --work runs/pair
    python scripts/bench_paste_modes.py --work runs/pair

Reuses a pair (or any) ``bench_swap_quality.py --work`` folder: its trained ``model``, the clip it
measured (``a_eval.mp4``) and the extract folders of A and B. The clip is converted once per mode
with the model untouched, and ``dfk evaluate`` measures each; one JSON line per mode, with the
CPU and torch's thread count. ``--frames-out DIR`` writes a close-up strip per mode.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_swap_quality import before_after, cpu_name, face_closeups, mouth_picks  # noqa: E402
from deepfake_cli.convert import ConvertOptions, convert  # noqa: E402
from deepfake_cli.evaluate import evaluate  # noqa: E402
from deepfake_cli.faces import create_backend  # noqa: E402
from deepfake_cli.faces.blend import BLEND_METHODS  # noqa: E402
from deepfake_cli.faces.color import COLOR_METHODS  # noqa: E402
from deepfake_cli.runtime import configure_threads  # noqa: E402

FIGURES = ("seam_strength", "seam_gradient", "background_psnr_db", "identity_transfer", "landmark_nme", "sharpness",
           "mouth_agreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench_swap_quality.py --work folder")
    parser.add_argument("--color", nargs="*", default=list(COLOR_METHODS), choices=COLOR_METHODS)
    parser.add_argument("--blend", nargs="*", default=list(BLEND_METHODS), choices=BLEND_METHODS)
    parser.add_argument("--frames-out", type=Path, default=None, help="folder for a close-up strip per mode")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    configure_threads()
    work, backend = args.work, create_backend("offline")
    clip = work / "a_eval.mp4"
    if not (work / "model").is_dir() or not clip.is_file():
        sys.exit(f"error: {work} has no model/ and a_eval.mp4 (run bench_swap_quality.py --work {work} first)")
    gaps, box = face_closeups(work / "faces_eval")
    for color, blend in itertools.product(args.color, args.blend):
        converted = work / f"paste_{color}_{blend}.mp4"
        convert(clip, converted, work / "model", ConvertOptions(color=color, blend=blend), progress=False)
        figures = evaluate(clip, converted, work / "faces_a", work / "faces_b", progress=False,
                           backend=backend).to_json()
        print(json.dumps({"bench": "paste_modes", "work": str(work), "color": color, "blend": blend,
                          **{k: figures[k] for k in FIGURES}, "cpu": cpu_name(), "threads": torch.get_num_threads()}),
              flush=True)
        if args.frames_out and gaps:
            args.frames_out.mkdir(parents=True, exist_ok=True)
            before_after(clip, converted, args.frames_out / f"{color}_{blend}.png", mouth_picks(gaps), box=box)


if __name__ == "__main__":
    main()
