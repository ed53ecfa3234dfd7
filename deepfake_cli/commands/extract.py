"""``dfk extract``: find, landmark and align faces."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, reference_options, resolve_device_name, settings
from deepfake_cli.extract import ExtractOptions, extract as run_extract
from deepfake_cli.faces import BACKENDS
from deepfake_cli.runtime import resolve_device


@click.command("extract")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for aligned face PNGs and alignments.json (re-running resumes).")
@click.option("--detector", type=click.Choice(BACKENDS), default="offline", show_default=True,
              help="Face backend: offline (no downloads) or fan (face-alignment's FAN landmarks).")
@click.option("--size", type=int, default=256, show_default=True, help="Aligned face size in pixels.")
@click.option("--coverage", type=float, default=0.625, show_default=True,
              help="Share of the crop width taken by brows-to-lip; lower keeps more chin and forehead.")
@click.option("--every-n", type=int, default=1, show_default=True, help="Use every N-th video frame.")
@click.option("--all-faces", is_flag=True, help="Keep every face per frame, not only the largest "
                                                "(with --reference: every face of that person).")
@reference_options("Keep only this person's faces: an image, a folder of images or an extract folder of them "
                   "(faces matched by dlib's identity descriptor; the nearest one per frame).")
@click.option("--min-size", type=float, default=20.0, show_default=True, help="Smallest face box side in px.")
@click.option("--min-score", type=float, default=0.8, show_default=True, help="Lowest detector score kept.")
@click.option("--fan-weights", type=click.Path(file_okay=False), default=None,
              help="Torch hub dir holding checkpoints/<FAN weights> (for --detector fan offline).")
@click.option("--flip-input/--no-flip-input", default=False, show_default=True,
              help="FAN only: also run on the mirrored face and average (slower, steadier).")
@device_option
@click.pass_context
def extract(ctx: click.Context, inputs: tuple[str, ...], outdir: str, detector: str, size: int, coverage: float,
            every_n: int, all_faces: bool, min_size: float, min_score: float, fan_weights: str | None,
            flip_input: bool, reference: str | None, reference_distance: float, device: str | None) -> None:
    """Find faces in videos, images or folders and write aligned face PNGs + alignments.json.

    \b
    Example:
      dfk extract data/alice.mp4 -o data/faces_alice --every-n 2
      dfk extract data/party.mp4 -o data/faces_alice --reference data/alice.jpg
    """
    options = ExtractOptions(
        detector=detector, size=size, coverage=coverage, every_n=every_n, all_faces=all_faces,
        min_size=min_size, min_score=min_score, fan_weights=fan_weights, flip_input=flip_input,
        device=str(resolve_device(resolve_device_name(ctx, device))),  # keeps cuda:N
        reference=reference, reference_distance=reference_distance,
    )
    summary = run_extract(list(inputs), outdir, options, progress=settings(ctx).show_progress)
    click.echo(summary.line())
