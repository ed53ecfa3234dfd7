"""``dfk convert``: swap faces in videos, images and folders with a trained model."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, reference_options, resolve_device_name, settings, shard_option
from deepfake_cli.faces.blend import BLEND_METHODS
from deepfake_cli.faces.color import COLOR_METHODS
from deepfake_cli.faces.masks import MASK_KINDS
from deepfake_cli.media.shards import Shard
from deepfake_cli.media.video import ENCODER_PRESETS
from deepfake_cli.convert import DIRECTIONS, ConvertError, ConvertOptions
from deepfake_cli.convert import convert as run_convert
from deepfake_cli.faces.follow import REDETECT_EVERY


@click.command("convert")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=str))
@click.option("-m", "--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Trained swap model folder (from train-swap).")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output video file for a video; output folder for images or folders.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="a2b", show_default=True,
              help="a2b puts face B onto videos of A; b2a the reverse.")
@click.option("--alignments", type=click.Path(), default=None,
              help="Reuse landmarks from extract's alignments.json instead of detecting faces.")
@click.option("--redetect", type=int, default=REDETECT_EVERY, show_default=True, metavar="N",
              help="Search the whole frame for faces every N frames and follow the face in between "
                   "(1 searches every whole frame; not used with --alignments).")
@reference_options("Swap only this person's face: an image, a folder of images or an extract folder of them "
                   "(matched by dlib's identity descriptor; frames where nobody matches stay as they are).")
@click.option("--mask", type=click.Choice(MASK_KINDS), default=None,
              help="Blend mask: learned (gan models), hull of the landmarks, combined (their product), or "
                   "occlusion (the hull minus whatever a face parser sees covering the face: hands, hair, "
                   "glasses; needs --parser-weights) [default: learned for gan models, else hull].")
@click.option("--parser-weights", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Face-parsing weights for --mask occlusion: a BiSeNet CelebAMask-HQ state dict "
                   "(79999_iter.pth).")
@click.option("--erode", type=float, default=None, metavar="PX",
              help="Shrink the mask by PX pixels (negative grows it) [default: 12% of the eye distance].")
@click.option("--blur", type=float, default=None, metavar="PX",
              help="Feather the mask edge, Gaussian sigma in PX [default: 8% of the eye distance].")
@click.option("--color", type=click.Choice(COLOR_METHODS), default="band", show_default=True,
              help="Match the swapped face's colours to the original face (band: locally, in a band "
                   "just inside the mask edge).")
@click.option("--blend", type=click.Choice(BLEND_METHODS), default="feather", show_default=True,
              help="feather: alpha blend; poisson: OpenCV seamless clone.")
@click.option("--smooth", type=float, default=1.0, show_default=True,
              help="Landmark smoothing over time (One-Euro filter); higher is steadier, 0 turns it off.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Faces per model call.")
@click.option("--crf", type=int, default=18, show_default=True,
              help="Video quality (CRF of libx264/libx265/libvpx-vp9; lower is better).")
@click.option("--preset", type=click.Choice(ENCODER_PRESETS), default="veryfast", show_default=True,
              help="Speed preset of libx264/libx265 (for libvpx-vp9 it sets -cpu-used): faster ones use less "
                   "CPU and write larger files at the same --crf.")
@click.option("--codec", default=None,
              help="ffmpeg video encoder, e.g. libx264, libx265, mpeg4 (default: libx264; libvpx-vp9 for "
                   "a .webm output, which takes only VP8/VP9/AV1).")
@click.option("--watermark", is_flag=True,
              help="Stamp a visible 'SYNTHETIC' label on every frame of a converted video and on every "
                   "image whose face was swapped.")
@shard_option
@click.option("--overwrite", is_flag=True,
              help="With a folder, convert files again whose output already exists (by default they are "
                   "skipped, so a re-run or a job array finishes the set).")
@device_option
@click.pass_context
def convert(ctx: click.Context, input_path: str, model_dir: str, output: str, direction: str, alignments: str | None,
            redetect: int, reference: str | None, reference_distance: float,
            mask: str | None, parser_weights: str | None, erode: float | None, blur: float | None,
            color: str, blend: str, smooth: float,
            batch_size: int, crf: int, preset: str, codec: str | None, watermark: bool, shard: Shard | None, overwrite: bool,
            device: str | None) -> None:
    """Swap faces in a video, an image or a folder of them; outputs are tagged as synthetic media.

    \b
    Examples:
      dfk convert data/alice.mp4 -m models/alice_bob -o data/alice_as_bob.mp4
      dfk convert data/clips/ -m models/alice_bob -o data/swapped/ --blend poisson --watermark
      dfk convert data/clips/ -m models/alice_bob -o data/swapped/ --shard auto/8   # in a SLURM array 1-8
      dfk convert data/talk.mp4 -m models/alice_bob -o out.mp4 --mask occlusion --parser-weights 79999_iter.pth
      dfk convert data/party.mp4 -m models/alice_bob -o out.mp4 --reference data/faces_alice/
    """
    options = ConvertOptions(
        direction=direction, mask=mask, erode=erode, blur=blur, color=color, blend=blend, smooth=smooth,
        batch_size=batch_size, crf=crf, preset=preset, codec=codec, watermark=watermark, alignments=alignments,
        redetect=redetect, device=resolve_device_name(ctx, device), parser_weights=parser_weights,
        reference=reference, reference_distance=reference_distance,
    )
    summary = run_convert(input_path, output, model_dir, options, progress=settings(ctx).show_progress,
                          shard=shard, overwrite=overwrite)
    if len(summary.results) > 1 or summary.failed or summary.skipped:
        click.echo(summary.table())
    click.echo(summary.line())
    if summary.failed:
        raise ConvertError(f"{len(summary.failed)} of {len(summary.results)} inputs could not be converted")
