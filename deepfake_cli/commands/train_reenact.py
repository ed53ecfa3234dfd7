"""``dfk train-reenact``: train a learned reenactment model on talking-head videos."""

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
from deepfake_cli.reenact.train import reenact_config
from deepfake_cli.reenact.train import train_reenact as run_train_reenact


@click.command("train-reenact")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@model_folder_options("reenact", "cpu")
@config_options
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Total step to reach (resuming continues up to it).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Pairs of frames per step (per rank).")
@click.option("--save-every", type=click.IntRange(min=1), default=None, help="Checkpoint every N steps.")
@click.option("--preview-every", type=click.IntRange(min=1), default=None, help="Preview grid every N steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (and save) after this much training time, even before --iterations.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the extracted face crops (default: MODEL_DIR/cache); reused by later runs.")
@device_option
@click.pass_context
def train_reenact(ctx: click.Context, videos: tuple[str, ...], model_dir: str, preset: str | None,
                  config_file: str | None, overrides: tuple[str, ...], iterations: int | None,
                  batch_size: int | None, save_every: int | None, preview_every: int | None,
                  minutes: float | None, cache_dir: str | None, device: str | None) -> None:
    """Train a first-order-motion-style model (keypoints, dense motion, generator) that animates a
    photo with a driving video; self-supervised on VIDEOS (videos, or folders of frames of one person).

    \b
    Examples:
      dfk train-reenact talk1.mp4 talk2.mp4 -o models/reenact --minutes 30
      dfk train-reenact clips/*.mp4 -o models/reenact_tiny --preset tiny
      torchrun --nproc_per_node=4 -m deepfake_cli train-reenact vox/*.mp4 -o models/vox --preset gpu
      dfk reenact photo.jpg driving.mp4 -o out.mp4 -m models/reenact

    Under torchrun each process (rank) trains --batch-size pairs on its own GPU; only rank 0 writes
    MODEL_DIR.
    """
    config = reenact_config(model_dir, preset, config_file,
                            train_overrides(overrides, iterations=iterations, batch_size=batch_size,
                                            save_every=save_every, preview_every=preview_every))
    options = settings(ctx)
    main_rank = quiet_other_ranks()
    summary = run_train_reenact(videos, model_dir, config, device=resolve_device_name(ctx, device),
                                seed=options.seed, progress=options.show_progress, minutes=minutes,
                                cache_dir=cache_dir)
    if main_rank:
        click.echo(summary.line())
