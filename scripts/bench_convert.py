"""Benchmark `dfk convert` at 640x480 and 1280x720: prints one JSON line.

The model is the ``original`` preset (64 px, ~82 M parameters) with random-init weights: speed
does not depend on training. For each resolution the script times every stage on its own over the
same frames (decode, detect, landmarks, faces = detect + landmarks + alignment, model in batches,
blend, encode), then the whole threaded pipeline through ``convert``. ``pipeline_ratio`` is the
pipeline's fps divided by the standalone fps of its slowest stage (decode, faces, model, blend,
encode each run in one thread); 1.0 means the other stages are fully hidden behind the slowest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deepfake_cli.config import load_config
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.media.synthetic import make_clip, write_clip
from deepfake_cli.media.video import VideoReader, VideoWriter
from deepfake_cli.runtime import autocast_dtype, configure_threads
from deepfake_cli.swap.convert import ConvertOptions, convert
from deepfake_cli.swap.convert_faces import DetectingLocator
from deepfake_cli.swap.convert_frames import FrameJob, FrameSwapper
from deepfake_cli.swap.loader import SwapModel
from deepfake_cli.swap.networks import build_generator
from deepfake_cli.swap.schema import SwapConfig, validate

PIPELINE_STAGES = ("decode", "faces", "model", "blend", "encode")


def original_model(device: torch.device) -> SwapModel:
    """The original preset's generator with random weights."""
    config = validate(load_config(SwapConfig, "swap", "original"))
    net = build_generator(config.model).eval().to(device)
    return SwapModel(net=net, kind=config.model.kind, size=config.model.size, coverage=0.625, step=0, device=device,
                     dtype=autocast_dtype(device, config.train.precision, cpu_bf16_when_native=True))


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def standalone_ms(clip: Path, model: SwapModel, options: ConvertOptions, backend: FaceBackend,
                  tmp: Path) -> dict[str, float]:
    """Milliseconds per frame of every stage run alone over the whole clip."""
    start = time.perf_counter()
    frames = list(VideoReader(clip))
    seconds = {"decode": time.perf_counter() - start}
    jobs = [FrameJob(clip, i, frame) for i, frame in enumerate(frames)]
    swapper = FrameSwapper(model, options.direction, options.blend_settings(model.kind), model.device)
    locator = DetectingLocator(backend)
    swapper.start_source(locator, 25.0, options.smooth)
    seconds["faces"] = sum(_timed(swapper.find_faces, [job]) for job in jobs)
    seconds["detect"], seconds["landmarks"] = locator.finder.times.detect, locator.finder.times.landmarks
    batch = options.batch_size
    seconds["model"] = sum(_timed(swapper.run_model, jobs[i:i + batch]) for i in range(0, len(jobs), batch))
    seconds["blend"] = sum(_timed(swapper.compose, [job]) for job in jobs)
    height, width = frames[0].shape[:2]
    start = time.perf_counter()
    with VideoWriter(tmp / "encode.mp4", width, height, 25.0, audio_from=clip, crf=options.crf) as writer:
        for job in jobs:
            writer.write(job.output)
    seconds["encode"] = time.perf_counter() - start
    return {name: round(1000.0 * value / len(frames), 2) for name, value in seconds.items()}


def bench(size: tuple[int, int], frames: int, repeats: int, model: SwapModel, backend: FaceBackend,
          tmp: Path) -> dict[str, object]:
    """Standalone stage times, pipeline fps and ratio at one resolution (medians over ``repeats``).

    Each repeat times the stages alone and then the pipeline, so the two see similar machine load;
    the ratio is computed per repeat.
    """
    clip = write_clip(tmp / f"bench_{size[0]}.mp4", make_clip("grace_hopper", frames, size, seed=3).frames,
                      fps=25.0, audio=True)
    options = ConvertOptions()
    runs = []
    for _ in range(repeats):
        stages = standalone_ms(clip, model, options, backend, tmp)
        summary = convert(clip, tmp / f"out_{size[0]}.mp4", "original-random-init", options, progress=False,
                          backend=backend, model=model)
        fps = summary.results[0].frames / summary.seconds
        slowest = max(PIPELINE_STAGES, key=lambda name: stages[name])
        runs.append((stages, fps, fps / (1000.0 / stages[slowest]), summary.times.ms_per_item()))
    return {
        "fps": round(statistics.median(run[1] for run in runs), 2),
        "stage_ms": {name: round(statistics.median(run[0][name] for run in runs), 2) for name in runs[0][0]},
        "slowest_stage": max(PIPELINE_STAGES, key=lambda name: statistics.median(run[0][name] for run in runs)),
        "pipeline_ratio": round(statistics.median(run[2] for run in runs), 3),
        "pipeline_ratios": [round(run[2], 3) for run in runs],
        "in_pipeline_ms": {name: round(statistics.median(run[3][name] for run in runs), 2) for name in runs[0][3]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    configure_threads()
    device = torch.device("cpu")
    model = original_model(device)
    backend = create_backend("offline", detector_threads=1)
    warm = make_clip("grace_hopper", 1, (640, 480)).frames[0]
    backend.detect(warm)
    model.swap(torch.rand(8, 3, model.size, model.size), "a2b")
    results: dict[str, object] = {"model": "original preset, random-init weights", "device": device.type,
                                  "precision": str(model.dtype or torch.float32).replace("torch.", ""),
                                  "threads": torch.get_num_threads(), "frames": args.frames, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((640, 480), (1280, 720)):
            results[f"{size[0]}x{size[1]}"] = bench(size, args.frames, args.repeats, model, backend, Path(tmp))
    results["pipeline_ratio"] = min(r["pipeline_ratio"] for k, r in results.items() if "x" in k and isinstance(r, dict))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
