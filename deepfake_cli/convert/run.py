"""The convert stage: swap faces in videos, images and folders with a trained swap model.

``convert(input, output, model_dir, options)`` handles three shapes of input:

* a video -> a video (same size, fps and frame count; audio copied; provenance tags);
* an image or a folder of images -> a folder of images (faceless images copied byte for byte);
* a folder of videos (and images) -> a folder mirroring it; a file that fails is reported and
  skipped, the others are converted; failures are listed in ``summary.failed`` (the CLI then
  prints the table and exits non-zero with ``ConvertError``). A file whose output already exists
  (outputs appear only complete, by rename) is skipped unless ``overwrite``, so a re-run finishes
  the set; ``shard`` converts only one shard of the folder's sorted files (see ``media.shards``).

Each source streams through ``run_pipeline``: decode -> faces -> model (batched) -> blend -> encode.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.errors import BackendError, ConfigError, DfkError, InputError
from deepfake_cli.faces import BACKENDS, FaceBackend, create_backend
from deepfake_cli.faces.blend import BLEND_METHODS
from deepfake_cli.faces.color import COLOR_METHODS
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, IdentityMatcher
from deepfake_cli.faces.masks import MASK_KINDS, MaskShape
from deepfake_cli.faces.parsing import NEEDS_WEIGHTS, load_face_parser
from deepfake_cli.media.alignments import Alignments, load_alignments, split_missing
from deepfake_cli.media.images import is_image, read_image
from deepfake_cli.media.sources import collect_sources, estimated_frames
from deepfake_cli.media.video import ENCODER_PRESETS, VideoReader, VideoWriter, is_video, video_encoder
from deepfake_cli.runtime import resolve_device
from deepfake_cli.convert.frames import BlendSettings, FrameJob, FrameSwapper, SwapModelLike
from deepfake_cli.convert.provenance import encode_tagged_image, provenance_text, video_metadata
from deepfake_cli.faces.follow import REDETECT_EVERY, DetectingLocator, FaceLocator, ReferenceFilter, StoredLocator
from deepfake_cli.media.pipeline import Stage, StageTimes, run_pipeline
from deepfake_cli.media.shards import Shard
from deepfake_cli.swap import load_swap_model

log = logging.getLogger(__name__)

DIRECTIONS = ("a2b", "b2a")


class ConvertError(DfkError):
    """Some inputs of a batch could not be converted (the others were)."""


@dataclass
class ConvertOptions:
    """How to convert; ``mask=None`` picks ``learned`` for gan models and ``hull`` otherwise.

    ``mask="occlusion"`` needs ``parser_weights`` (a BiSeNet face-parsing state dict): the hull is cut
    to the face classes the parser finds, so whatever covers the face stays (``faces.parsing``).
    """

    direction: str = "a2b"
    mask: str | None = None
    erode: float | None = None
    blur: float | None = None
    color: str = "band"
    blend: str = "feather"
    smooth: float = 1.0
    batch_size: int = 8
    crf: int = 18
    preset: str = "veryfast"
    codec: str | None = None  # None: libx264, or libvpx-vp9 for a .webm output
    watermark: bool = False
    alignments: str | None = None
    redetect: int = REDETECT_EVERY
    detector: str = "offline"
    device: str = "auto"
    parser_weights: str | None = None
    reference: str | None = None
    reference_distance: float = SAME_PERSON_DISTANCE

    def check(self) -> None:
        """Reject out-of-range values with a clear message."""
        for name, value, allowed in (("--direction", self.direction, DIRECTIONS),
                                     ("--color", self.color, COLOR_METHODS),
                                     ("--blend", self.blend, BLEND_METHODS),
                                     ("--detector", self.detector, BACKENDS),
                                     ("--preset", self.preset, ENCODER_PRESETS)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.mask is not None and self.mask not in MASK_KINDS:
            raise ConfigError(f"--mask must be one of {', '.join(MASK_KINDS)}; got {self.mask!r}")
        if self.mask == "occlusion" and not self.parser_weights:
            raise BackendError(NEEDS_WEIGHTS)
        if self.parser_weights and self.mask != "occlusion":
            log.warning("--parser-weights is used only with --mask occlusion; ignoring it")
        if self.blur is not None and self.blur < 0:
            raise ConfigError(f"--blur must be >= 0; got {self.blur}")
        if self.smooth < 0:
            raise ConfigError(f"--smooth must be >= 0 (0 turns smoothing off); got {self.smooth}")
        if self.redetect < 1:
            raise ConfigError(f"--redetect must be at least 1 (1 searches every whole frame); got {self.redetect}")
        if not 0.0 < self.reference_distance <= 2.0:
            raise ConfigError(f"--reference-distance must be within 0..2; got {self.reference_distance}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1; got {self.batch_size}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be within 0..51; got {self.crf}")

    def blend_settings(self, model_kind: str) -> BlendSettings:
        """The blending settings for a model of ``model_kind`` (``original`` or ``gan``)."""
        mask = self.mask or ("learned" if model_kind == "gan" else "hull")
        if mask in ("learned", "combined") and model_kind != "gan":
            raise ConfigError(f"--mask {mask} needs a gan model (a {model_kind} model predicts no mask); use hull")
        return BlendSettings(mask=mask, mask_shape=MaskShape(self.erode, self.blur), color=self.color,
                             blend=self.blend, watermark=self.watermark)


@dataclass
class SourceResult:
    """What happened to one input file."""

    source: Path
    output: Path
    kind: str
    frames: int = 0
    swapped: int = 0
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False


@dataclass
class ConvertSummary:
    """What one convert run did, per input file, with pipeline stage timings."""

    results: list[SourceResult] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    seconds: float = 0.0
    shard: Shard | None = None
    identity_seconds: float = 0.0
    descriptors: int = 0

    @property
    def failed(self) -> list[SourceResult]:
        """Inputs that could not be converted."""
        return [r for r in self.results if r.error]

    @property
    def skipped(self) -> list[SourceResult]:
        """Inputs left alone because their output already existed."""
        return [r for r in self.results if r.skipped]

    def line(self) -> str:
        """A one-line summary for the terminal."""
        done = [r for r in self.results if not r.error and not r.skipped]
        frames = sum(r.frames for r in done)
        swapped = sum(r.swapped for r in done)
        fps = frames / self.seconds if self.seconds > 0 else 0.0
        name = f"convert (shard {self.shard.label})" if self.shard else "convert"
        text = (f"{name}: {len(done)} of {len(self.results)} inputs, {frames} frames "
                f"({swapped} with a swapped face) in {self.seconds:.1f}s ({fps:.1f} fps)")
        if self.skipped:
            text += f", {len(self.skipped)} skipped (output already there)"
        return text + (f", {len(self.failed)} failed" if self.failed else "")

    def table(self) -> str:
        """A plain-text table: one row per video and per failed image, one row each for the other
        images converted and skipped."""
        rows = [r for r in self.results if r.kind == "video" or r.error]
        lines = [f"{'status':<7} {'frames':>7} {'swapped':>7} {'fps':>6}  input -> output / error"]
        for r in rows:
            fps = f"{r.frames / r.seconds:.1f}" if r.seconds > 0 and not r.error and not r.skipped else "-"
            detail = f"error: {r.error}" if r.error else str(r.output)
            status = "FAILED" if r.error else "skipped" if r.skipped else "ok"
            frames, swapped = ("-", "-") if r.skipped else (r.frames, r.swapped)
            lines.append(f"{status:<7} {frames:>7} {swapped:>7} {fps:>6}  {r.source} -> {detail}")
        for status, skipped in (("ok", False), ("skipped", True)):
            images = [r for r in self.results if r.kind == "image" and not r.error and r.skipped == skipped]
            if images:
                folder = os.path.commonpath([r.output.parent for r in images])
                swapped = "-" if skipped else sum(r.swapped for r in images)
                lines.append(f"{status:<7} {'-' if skipped else len(images):>7} {swapped:>7} {'-':>6}  "
                             f"{len(images)} images -> {folder}")
        return "\n".join(lines)


def _plan(input_path: Path, output: Path) -> list[tuple[Path, Path]]:
    """``(source, target)`` pairs: where each input file's result goes."""
    if not input_path.exists():
        raise InputError("input not found", str(input_path))
    if input_path.is_file():
        if is_video(input_path):
            target = output / input_path.name if output.is_dir() or not output.suffix else output
            if not is_video(target):
                raise InputError("output of a video must be a video file (.mp4, .mkv, ...) or a folder", str(output))
        elif is_image(input_path):
            if output.suffix and not output.is_dir():
                raise InputError("output of images is a folder; give a folder path", str(output))
            target = output / input_path.name
        else:
            raise InputError("not an image or video file (unknown suffix)", str(input_path))
        pairs = [(input_path, target)]
    else:
        if output.exists() and not output.is_dir():
            raise InputError("output of a folder must be a folder", str(output))
        if output.resolve().is_relative_to(input_path.resolve()):
            raise InputError("output folder must not be inside the input folder", str(output))
        pairs = [(s, output / s.relative_to(input_path)) for s in collect_sources([input_path])]
    for source, target in pairs:
        if target.resolve() == source.resolve():
            raise InputError("output would overwrite the input; choose another output", str(target))
    return pairs


def _listed_faces(path: Path) -> Alignments:
    """The alignments file at ``path`` (a file or its folder) without the records whose face PNG is
    gone from its folder (deleted by hand, or moved to rejected/ by dfk sort). When none of the
    PNGs is there (the file was copied on its own), every record is used."""
    alignments = load_alignments(path)
    present, missing = split_missing(alignments, path if path.is_dir() else path.parent)
    if missing and present:
        log.info("%s: skipping %d listed faces whose PNG is gone (deleted, or moved by dfk sort)", path,
                 len(missing))
        alignments.faces = present
    return alignments


class _Run:
    """One convert run: the model, the face locator and the swapper shared by every source."""

    def __init__(self, model: SwapModelLike, model_dir: Path, options: ConvertOptions,
                 backend: FaceBackend | None, device: torch.device, summary: ConvertSummary) -> None:
        self.options = options
        settings = options.blend_settings(model.kind)
        parser = None
        if settings.mask == "occlusion":
            parser = load_face_parser(options.parser_weights, device)
        self.swapper = FrameSwapper(model, options.direction, settings, device, parser)
        self.matcher: IdentityMatcher | None = None
        if options.reference:
            backend = backend or create_backend(options.detector, device=str(device), detector_threads=1)
            self.matcher = IdentityMatcher.from_reference(options.reference, backend, options.reference_distance)
        if options.alignments:
            self.stored: StoredLocator | None = StoredLocator(_listed_faces(Path(options.alignments)))
            self.locator: FaceLocator = self.stored
            if self.matcher is not None:
                self.locator = ReferenceFilter(self.stored, self.matcher)
        else:
            self.stored = None
            # one detector thread: the other stages use the other cores meanwhile
            self.locator = DetectingLocator(backend or create_backend(options.detector, device=str(device),
                                                                      detector_threads=1), options.redetect,
                                            self.matcher)
        self.provenance = provenance_text(model_dir, options.direction)
        self.summary = summary

    def stages(self, write: Stage[FrameJob]) -> list[Stage[FrameJob]]:
        """The pipeline after decoding: faces -> model -> blend -> ``write``."""
        swapper = self.swapper
        return [Stage("faces", swapper.find_faces), Stage("model", swapper.run_model, self.options.batch_size),
                Stage("blend", swapper.compose), write]

    def video(self, source: Path, target: Path, bar: tqdm) -> SourceResult:
        """Convert one video into ``target``."""
        result = SourceResult(source, target, "video")
        reader = VideoReader(source)
        if self.stored is not None and not self.stored.has(source):
            raise InputError("the alignments file lists no faces for this video", str(source))
        info = reader.info
        self.swapper.start_source(self.locator, info.fps, self.options.smooth, label_all=True)
        options = self.options
        with VideoWriter(target, info.width, info.height, info.fps, audio_from=source, codec=options.codec,
                         crf=options.crf, preset=options.preset, metadata=video_metadata(self.provenance)) as writer:
            def write(jobs: list[FrameJob]) -> None:
                for job in jobs:
                    writer.write(job.output, job.seconds)

            frames = (FrameJob(source, i, frame, seconds=seconds)
                      for i, (seconds, frame) in enumerate(reader.timed()))
            for job in run_pipeline(frames, self.stages(Stage("encode", write)), times=self.summary.times):
                result.frames += 1
                result.swapped += job.swapped > 0
                bar.update(1)
        return result

    def images(self, pairs: list[tuple[Path, Path]], bar: tqdm) -> list[SourceResult]:
        """Convert images (each on its own, unsmoothed) into their targets; bad ones are reported."""
        results: list[SourceResult] = []

        def jobs() -> Iterator[FrameJob]:
            for source, target in pairs:
                try:
                    frame = read_image(source)
                except InputError as exc:
                    results.append(SourceResult(source, target, "image", error=exc.message))
                    log.warning("skipping: %s", exc)
                    bar.update(1)
                    continue
                yield FrameJob(source, 0, frame, target=target)

        self.swapper.start_source(self.locator, 25.0, 0.0)
        for job in run_pipeline(jobs(), self.stages(Stage("encode", self._write_images)), times=self.summary.times):
            results.append(SourceResult(job.source, job.target, "image", frames=1, swapped=job.swapped))
            bar.update(1)
        return results

    def _write_images(self, jobs: list[FrameJob]) -> None:
        for job in jobs:
            assert job.target is not None and job.output is not None
            with atomic_path(job.target) as tmp:
                if job.swapped:
                    tmp.write_bytes(encode_tagged_image(job.output, job.target.suffix, self.provenance))
                else:
                    shutil.copyfile(job.source, tmp)


def convert(
    input_path: str | Path,
    output: str | Path,
    model_dir: str | Path,
    options: ConvertOptions | None = None,
    progress: bool = True,
    backend: FaceBackend | None = None,
    model: SwapModelLike | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
) -> ConvertSummary:
    """Swap the faces in ``input_path`` (video, image or folder) into ``output`` with a trained model.

    ``model`` skips loading ``model_dir`` (which then only names the model in the provenance tag);
    ``backend`` replaces the face detector. A single input that fails raises its error; in a
    folder, a file that fails is logged and listed in ``summary.failed`` and the rest converted.
    In a folder, a file whose output already exists is listed as skipped and not converted again
    unless ``overwrite``. ``shard`` keeps only that shard of the sorted input files; the summary
    lists only those. When nothing is left to convert the model is not loaded.
    """
    options = options or ConvertOptions()
    options.check()
    source_root, target_root = Path(input_path), Path(output)
    pairs = _plan(source_root, target_root)
    for _, target in pairs:  # a --codec the output container cannot hold fails before any work
        if is_video(target):
            video_encoder(target.suffix, options.codec)
    if shard is not None:
        mine = shard.select(pairs)
        log.info("shard %s: %d of %d input files", shard.label, len(mine), len(pairs))
        pairs = mine
    batch = source_root.is_dir()
    order = {source: i for i, (source, _) in enumerate(pairs)}
    summary = ConvertSummary(shard=shard)
    existing = {t for _, t in pairs if t.is_file()} if batch and not overwrite else set()
    for source, target in pairs:
        if target in existing:
            log.debug("skipping %s: %s already exists", source, target)
            summary.results.append(SourceResult(source, target, "video" if is_video(source) else "image",
                                                skipped=True))
    pairs = [(s, t) for s, t in pairs if t not in existing]
    if existing:
        log.info("skipping %d of %d input files: their outputs already exist",
                 len(existing), len(existing) + len(pairs))
    started = time.perf_counter()
    if not pairs:
        summary.seconds = time.perf_counter() - started
        return summary
    device = resolve_device(options.device)
    run = _Run(model or load_swap_model(model_dir, device), Path(model_dir), options, backend, device, summary)
    videos = [(s, t) for s, t in pairs if is_video(s)]
    images = [(s, t) for s, t in pairs if is_image(s)]
    total = sum(estimated_frames(s) for s, _ in pairs)
    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for source, target in videos:
            bar.set_description(source.name[:24])
            begun = time.perf_counter()
            try:
                result = run.video(source, target, bar)
            except DfkError as exc:
                if not batch:
                    raise
                log.warning("skipping: %s", exc)
                result = SourceResult(source, target, "video", error=exc.message)
            result.seconds = time.perf_counter() - begun
            run.summary.results.append(result)
        if images:
            bar.set_description("images")
            run.summary.results.extend(run.images(images, bar))
    run.summary.seconds = time.perf_counter() - started
    if run.matcher is not None:  # the descriptors computed on the frames
        run.summary.identity_seconds, run.summary.descriptors = run.matcher.seconds, run.matcher.computed
    run.summary.results.sort(key=lambda r: order[r.source])  # the (sorted) input order, skipped ones included
    if not batch and run.summary.failed:
        failed = run.summary.failed[0]
        raise InputError(failed.error or "conversion failed", str(failed.source))
    return run.summary
