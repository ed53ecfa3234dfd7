"""``dfk train-facegan``: train a face GAN (whole-face synthesis) on folders of faces."""

from __future__ import annotations

import click

from deepfake_cli.commands import (
    config_options,
    device_option,
    model_folder_options,
    quiet_other_ranks,
    resolve_device_name,
    settings,
    train_overrides,
)
from deepfake_cli.synth import facegan_config
from deepfake_cli.synth import train_facegan as run_train_facegan


@click.command("train-facegan")
@click.argument("faces_dirs", nargs=-1, required=True, type=click.Path(file_okay=False), metavar="FACES_DIR...")
@model_folder_options("synth", "cpu")
@config_options
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Total step to reach (resuming continues).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Faces per step (per rank).")
@click.option("--mosaic-every", type=click.IntRange(min=1), default=None,
              help="Write the 6x6 fixed-noise mosaic to MODEL_DIR/previews/ every N steps.")
@click.option("--save-every", type=click.IntRange(min=1), default=None, help="Checkpoint every N steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (and save) after this much training time, even before --iterations.")
@device_option
@click.pass_context
def train_facegan(ctx: click.Context, faces_dirs: tuple[str, ...], model_dir: str, preset: str | None,
                  config_file: str | None, overrides: tuple[str, ...], iterations: int | None, batch_size: int | None,
                  mosaic_every: int | None, save_every: int | None, minutes: float | None,
                  device: str | None) -> None:
    """Train a DCGAN-class face GAN on FACES_DIR... (dfk extract folders or plain folders of faces).

    \b
    Examples:
      dfk train-facegan data/faces_a data/faces_b -o models/facegan --minutes 15
      dfk train-facegan faces/ -o facegan_gpu --preset gpu --set train.augment=[]
      torchrun --nproc_per_node=4 -m deepfake_cli train-facegan faces/ -o facegan --preset gpu

    A mosaic of the same 36 noise vectors is written every --mosaic-every steps; log.csv and
    loss.png follow the losses. Under torchrun only rank 0 writes MODEL_DIR.
    """
    config = facegan_config(model_dir, preset, config_file,
                            train_overrides(overrides, iterations=iterations, batch_size=batch_size, mosaic_every=mosaic_every,
                                            save_every=save_every))
    options = settings(ctx)
    main_rank = quiet_other_ranks()
    summary = run_train_facegan(list(faces_dirs), model_dir, config, device=resolve_device_name(ctx, device),
                                seed=options.seed, progress=options.show_progress, minutes=minutes)
    if main_rank:
        click.echo(summary.line())
