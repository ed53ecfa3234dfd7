"""``synthesize``: faces of nobody from a trained face GAN, as ``dfk synth`` writes them.

Writes ``count`` PNG faces and ``videos`` short clips of a latent walk (the noise moves smoothly
from one random point to the next, so the face morphs continuously: material for video
detectors). Every file carries the synthetic-media label (``deepfake_cli.media.provenance``).
Everything is written into a temporary folder first and moved into place only when all of it
succeeded: a failure leaves no partial output.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from deepfake_cli.checkpoint import fsync_dir
from deepfake_cli.errors import InputError
from deepfake_cli.media.provenance import encode_tagged_image, provenance_text, video_metadata
from deepfake_cli.media.video import VideoWriter
from deepfake_cli.runtime import resolve_device
from deepfake_cli.synth import store
from deepfake_cli.synth.gan import build_generator
from deepfake_cli.synth.model import Generator

FPS = 24.0
FRAMES_PER_POINT = 24  # a latent walk reaches a new random point every second
BATCH = 64


@dataclass
class SynthSummary:
    """What one ``synthesize`` call wrote."""

    out_dir: Path
    images: list[Path]
    videos: list[Path]
    step: int

    def line(self) -> str:
        """A one-line summary for the terminal."""
        clips = f" and {len(self.videos)} latent-walk clip(s)" if self.videos else ""
        return f"wrote {len(self.images)} synthetic face(s){clips} (model step {self.step}) to {self.out_dir}"


def load_sampler(model_dir: str | Path, device: torch.device) -> tuple[Generator, int]:
    """The model folder's sampling generator (the EMA weights when saved) in eval mode, and its step.

    ``InputError`` for a missing folder, ``CheckpointError`` for one without a face GAN.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise InputError("no such model folder", str(folder))
    if not store.has_checkpoint(folder):
        raise InputError(store.NOT_A_MODEL, str(folder))
    config = store.read_config(folder)
    checkpoint = store.load(folder, training=False)
    generator = build_generator(config)
    generator.load_state_dict(checkpoint.model.get("generator_ema", checkpoint.model["generator"]))
    return generator.to(device).eval(), checkpoint.step


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latent vectors (keeps a Gaussian sample's typical length)."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if float(omega) < 1e-4:
        return a + (b - a) * t
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def latent_walk(points: torch.Tensor, frames: int, per_point: int = FRAMES_PER_POINT) -> torch.Tensor:
    """``frames`` latents moving through ``points`` (``K x latent``), one point per ``per_point``
    frames, eased in and out of each point (smoothstep), so consecutive frames differ a little."""
    walk = []
    for i in range(frames):
        segment, t = divmod(i / per_point, 1.0)
        k = int(segment)
        if k > len(points) - 2:  # past the last point: stay on it
            k, t = len(points) - 2, 1.0
        walk.append(slerp(points[k], points[k + 1], t * t * (3 - 2 * t)))
    return torch.stack(walk)


def walk_points(frames: int) -> int:
    """How many random points a walk of ``frames`` frames visits."""
    return max(2, math.ceil((frames - 1) / FRAMES_PER_POINT) + 1)


def to_uint8(faces: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (``B x 3 x S x S``) as RGB uint8 ``B x S x S x 3``."""
    return ((faces.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _check(count: int, videos: int, frames: int) -> None:
    if count < 1:
        raise InputError(f"-n must be at least 1; got {count}")
    if videos < 0:
        raise InputError(f"--videos must be 0 or more; got {videos}")
    if videos and frames < 2:
        raise InputError(f"--frames must be at least 2; got {frames}")


@torch.no_grad()
def synthesize(model_dir: str | Path, count: int, out_dir: str | Path, seed: int = 0, videos: int = 0,
               frames: int = 48, device: str = "auto", progress: bool = False) -> SynthSummary:
    """Write ``count`` faces ``synth_<seed>_<i>.png`` and ``videos`` clips ``walk_<seed>_<k>.mp4`` of
    ``frames`` frames (24 fps) into ``out_dir``; the same seed gives the same faces.

    Raises ``InputError`` for a bad count, a missing model folder or one without a face GAN, and
    ``CheckpointError`` for an unreadable checkpoint; nothing is written then.
    """
    _check(count, videos, frames)
    torch_device = resolve_device(device)
    generator, step = load_sampler(model_dir, torch_device)
    text = provenance_text("a face of nobody generated", f"face GAN '{Path(model_dir).resolve().name}' (seed {seed})")
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    random = torch.Generator().manual_seed(seed)
    names: list[str] = []
    try:
        noise = torch.randn(count, generator.latent, generator=random)
        bar = tqdm(total=count + videos, unit="file", disable=not progress, dynamic_ncols=True)
        for start in range(0, count, BATCH):
            faces = to_uint8(generator(noise[start:start + BATCH].to(torch_device)))
            for offset, face in enumerate(faces):
                name = f"synth_{seed}_{start + offset:05d}.png"
                (staging / name).write_bytes(encode_tagged_image(face, ".png", text))
                names.append(name)
                bar.update(1)
        for k in range(videos):
            walk = latent_walk(torch.randn(walk_points(frames), generator.latent, generator=random), frames)
            name = f"walk_{seed}_{k:03d}.mp4"
            with VideoWriter(staging / name, generator.size, generator.size, FPS, metadata=video_metadata(text)) as clip:
                for start in range(0, frames, BATCH):
                    for face in to_uint8(generator(walk[start:start + BATCH].to(torch_device))):
                        clip.write(face)
            names.append(name)
            bar.update(1)
        bar.close()
        for name in names:
            os.replace(staging / name, out / name)
        fsync_dir(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    paths = [out / name for name in names]
    return SynthSummary(out, [p for p in paths if p.suffix == ".png"], [p for p in paths if p.suffix == ".mp4"], step)
