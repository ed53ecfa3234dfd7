"""``dfk reenact``: animate the face of one photo with the motion of a driving video."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings
from deepfake_cli.faces import BACKENDS
from deepfake_cli.media.video import ENCODER_PRESETS
from deepfake_cli.reenact.run import REDETECT_EVERY, ReenactOptions
from deepfake_cli.reenact.run import reenact as run_reenact


@click.command("reenact")
@click.argument("photo", type=click.Path(path_type=str))
@click.argument("driving", metavar="DRIVING_VIDEO", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(), help="Output video file (.mp4, .mkv, ...).")
@click.option("-m", "--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="A learned reenactment model folder (from train-reenact) [default: the landmark warp].")
@click.option("--relative/--absolute", default=True, show_default=True,
              help="relative: the photo's face moves as the driving face moves from its first frame; absolute: "
                   "it takes the driving face's shape, aligned onto the photo (warp only).")
@click.option("--smooth", type=float, default=1.0, show_default=True,
              help="Landmark smoothing over time (One-Euro filter); higher is steadier, 0 turns it off.")
@click.option("--redetect", type=int, default=REDETECT_EVERY, show_default=True, metavar="N",
              help="Search the whole driving frame for faces every N frames and follow the face in a window in "
                   "between (faster, but the landmarks jitter more).")
@click.option("--detector", type=click.Choice(BACKENDS), default="offline", show_default=True,
              help="Face backend for the landmarks.")
@click.option("--crf", type=int, default=18, show_default=True,
              help="Video quality (CRF of libx264/libx265/libvpx-vp9; lower is better).")
@click.option("--preset", type=click.Choice(ENCODER_PRESETS), default="veryfast", show_default=True,
              help="Encoder speed preset of libx264/libx265.")
@click.option("--codec", default=None, help="ffmpeg video encoder (default: libx264; libvpx-vp9 for .webm).")
@click.option("--watermark", is_flag=True, help="Stamp a visible 'SYNTHETIC' label on every frame.")
@device_option
@click.pass_context
def reenact(ctx: click.Context, photo: str, driving: str, output: str, model_dir: str | None, relative: bool,
            smooth: float, redetect: int, detector: str, crf: int, preset: str, codec: str | None, watermark: bool,
            device: str | None) -> None:
    """Animate PHOTO's face with the head motion and expression of DRIVING_VIDEO's face.

    The output has the photo's size and the driving video's frames, timing and audio, and is tagged
    as synthetic media.

    \b
    Examples:
      dfk reenact portrait.jpg talk.mp4 -o portrait_talking.mp4
      dfk reenact portrait.jpg talk.mp4 -o out.mp4 --smooth 2 --watermark
      dfk reenact portrait.jpg talk.mp4 -o out.mp4 -m models/reenact_cpu
    """
    options = ReenactOptions(relative=relative, smooth=smooth, redetect=redetect, detector=detector,
                             device=resolve_device_name(ctx, device), crf=crf, preset=preset, codec=codec,
                             watermark=watermark)
    summary = run_reenact(photo, driving, output, options, model_dir, progress=settings(ctx).show_progress)
    click.echo(summary.line())
