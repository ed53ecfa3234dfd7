"""Benchmark `dfk convert` at 640x480 and 1280x720: prints one JSON line.

The model is the ``original`` preset (64 px, ~82 M parameters) with random-init weights: speed
does not depend on training. For each resolution the script times every stage on its own over the
same frames (decode, detect, landmarks, faces = detect + landmarks + alignment, model in batches,
blend, encode), then the whole threaded pipeline through ``convert``. ``pipeline_ratio`` is the
pipeline's fps divided by the standalone fps of its slowest stage (decode, faces, model, blend,
encode, each alone on the whole machine); 1.0 means the other stages are fully hidden behind the
slowest.

The stages share the machine's cores, so the pipeline can go no faster than ``cores`` divided by
the CPU time all stages spend on a frame (``stage_cpu_ms``, counting every thread and the ffmpeg
encoder). ``cpu_bound_fps`` estimates that limit from the stages' standalone CPU time (in the
pipeline a stage may spend a little more or less, so ``cpu_use`` can pass 1), ``cpu_bound_ratio``
is the best ``pipeline_ratio`` it allows, and ``cpu_use`` the share of it the pipeline reached.

With ``--reference`` every run converts with ``--reference`` (the clip's still) and each resolution
adds the identity matching's cost: ``identity_faces_per_frame`` (descriptors computed per frame),
``identity_ms_per_face`` and ``identity_fraction`` (descriptor seconds over the pipeline's wall time);
the stage times then include it (in ``faces``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deepfake_cli.config import load_config
from deepfake_cli.faces import FaceBackend, create_backend
from deepfake_cli.faces.identity import IdentityMatcher
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import load_still, make_clip, write_clip
from deepfake_cli.media.video import VideoReader, VideoWriter
from deepfake_cli.runtime import autocast_dtype, configure_threads, resolve_device
from deepfake_cli.convert import ConvertOptions, convert
from deepfake_cli.faces.follow import DetectingLocator
from deepfake_cli.convert.frames import FrameJob, FrameSwapper
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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_seconds() -> float:
    """CPU time of this process's threads and its finished children (the ffmpeg encoder)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Clock:
    """Wall and CPU seconds per stage, accumulated over calls."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., object], *args: object) -> None:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        fn(*args)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + _cpu_seconds() - cpu


def _encode(path: Path, clip: Path, jobs: list[FrameJob], options: ConvertOptions) -> None:
    height, width = jobs[0].frame.shape[:2]
    with VideoWriter(path, width, height, 25.0, audio_from=clip, crf=options.crf,
                     preset=options.preset) as writer:
        for job in jobs:
            writer.write(job.output)


def standalone_ms(clip: Path, model: SwapModel, options: ConvertOptions, backend: FaceBackend,
                  tmp: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Wall and CPU milliseconds per frame of every stage run alone over the whole clip."""
    clock = _Clock()
    frames: list = []
    clock.run("decode", lambda: frames.extend(VideoReader(clip)))
    jobs = [FrameJob(clip, i, frame) for i, frame in enumerate(frames)]
    swapper = FrameSwapper(model, options.direction, options.blend_settings(model.kind), model.device)
    matcher = IdentityMatcher.from_reference(options.reference, backend) if options.reference else None
    locator = DetectingLocator(backend, options.redetect, matcher)
    swapper.start_source(locator, 25.0, options.smooth)
    for job in jobs:
        clock.run("faces", swapper.find_faces, [job])
    clock.wall["detect"], clock.wall["landmarks"] = locator.finder.times.detect, locator.finder.times.landmarks
    batch = options.batch_size
    for i in range(0, len(jobs), batch):
        clock.run("model", swapper.run_model, jobs[i:i + batch])
    for job in jobs:
        clock.run("blend", swapper.compose, [job])
    clock.run("encode", _encode, tmp / "encode.mp4", clip, jobs, options)
    per_frame = 1000.0 / len(frames)
    return ({name: round(value * per_frame, 2) for name, value in clock.wall.items()},
            {name: round(value * per_frame, 2) for name, value in clock.cpu.items()})


def bench(size: tuple[int, int], frames: int, repeats: int, model: SwapModel, backend: FaceBackend,
          tmp: Path, reference: str | None = None) -> dict[str, object]:
    """Standalone stage times, pipeline fps and ratio at one resolution (medians over ``repeats``).

    Each repeat times the stages alone and then the pipeline, so the two see similar machine load;
    the ratio is computed per repeat.
    """
    clip = write_clip(tmp / f"bench_{size[0]}.mp4", make_clip("grace_hopper", frames, size, seed=3).frames,
                      fps=25.0, audio=True)
    # convert's own stages run where the model does
    options = ConvertOptions(device=str(model.device), reference=reference)
    cores = usable_cores()
    runs = []
    for _ in range(repeats):
        stages, cpu = standalone_ms(clip, model, options, backend, tmp)
        summary = convert(clip, tmp / f"out_{size[0]}.mp4", "original-random-init", options, progress=False,
                          backend=backend, model=model)
        fps = summary.results[0].frames / summary.seconds
        slowest_fps = 1000.0 / max(stages[name] for name in PIPELINE_STAGES)
        bound_fps = cores * 1000.0 / sum(cpu[name] for name in PIPELINE_STAGES)
        runs.append({"stages": stages, "cpu": cpu, "fps": fps, "ratio": fps / slowest_fps, "bound_fps": bound_fps,
                     "bound_ratio": min(bound_fps, slowest_fps) / slowest_fps, "use": fps / bound_fps,
                     "in_pipeline": summary.times.ms_per_item(),
                     "identity_per_frame": summary.descriptors / summary.results[0].frames,
                     "identity_ms": 1000 * summary.identity_seconds / max(summary.descriptors, 1),
                     "identity_fraction": summary.identity_seconds / summary.seconds})

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    def medians(key: str) -> dict[str, float]:
        return {name: round(statistics.median(run[key][name] for run in runs), 2) for name in runs[0][key]}

    stage_ms = medians("stages")
    identity = {} if reference is None else {
        "identity_faces_per_frame": round(median("identity_per_frame"), 3),
        "identity_ms_per_face": round(median("identity_ms"), 2),
        "identity_fraction": round(median("identity_fraction"), 4),
    }
    return {
        "fps": round(median("fps"), 2),
        "stage_ms": stage_ms,
        "stage_cpu_ms": medians("cpu"),
        "slowest_stage": max(PIPELINE_STAGES, key=lambda name: stage_ms[name]),
        "pipeline_ratio": round(median("ratio"), 3),
        "pipeline_ratios": [round(run["ratio"], 3) for run in runs],
        "cpu_bound_fps": round(median("bound_fps"), 2),
        "cpu_bound_ratio": round(median("bound_ratio"), 3),
        "cpu_use": round(median("use"), 3),
        "in_pipeline_ms": medians("in_pipeline"),
        **identity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (steady state, not start-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the swap model runs: cpu, cuda, cuda:N or auto")
    parser.add_argument("--reference", action="store_true",
                        help="convert with --reference (the clip's still) and report the identity matching's cost")
    args = parser.parse_args()
    configure_threads()
    device = resolve_device(args.device)
    model = original_model(device)
    backend = create_backend("offline", detector_threads=1)
    warm = make_clip("grace_hopper", 1, (640, 480)).frames[0]
    backend.detect(warm)
    model.swap(torch.rand(8, 3, model.size, model.size), "a2b")
    results: dict[str, object] = {"model": "original preset, random-init weights", "device": device.type,
                                  "precision": str(model.dtype or torch.float32).replace("torch.", ""),
                                  "threads": torch.get_num_threads(), "cores": usable_cores(), "frames": args.frames, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        if args.reference:
            reference = str(Path(tmp) / "reference.png")
            write_image(reference, load_still("grace_hopper"))
            IdentityMatcher.from_reference(reference, backend)  # loads dlib's model before timing
        for size in ((640, 480), (1280, 720)):
            results[f"{size[0]}x{size[1]}"] = bench(size, args.frames, args.repeats, model, backend, Path(tmp),
                                                    reference)
    results["pipeline_ratio"] = min(r["pipeline_ratio"] for k, r in results.items() if "x" in k and isinstance(r, dict))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
