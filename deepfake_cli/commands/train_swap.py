"""``dfk train-swap``: train a face-swap model on two aligned face sets."""

from __future__ import annotations

from pathlib import Path

import click

from deepfake_cli.checkpoint import CONFIG_FILE
from deepfake_cli.commands import (
    config_options,
    device_option,
    model_folder_options,
    quiet_other_ranks,
    resolve_device_name,
    settings,
    train_overrides,
)
from deepfake_cli.swap.train import INIT_PARTS, swap_config
from deepfake_cli.swap.train import train_swap as run_train_swap

@click.command("train-swap")
@click.option("-A", "faces_a", required=True, type=click.Path(file_okay=False),
              help="Extract folder of identity A (aligned PNGs + alignments.json).")
@click.option("-B", "faces_b", required=True, type=click.Path(file_okay=False),
              help="Extract folder of identity B.")
@model_folder_options("swap", "original")
@config_options
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Total step to reach (resuming continues up to it).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Faces per identity per step.")
@click.option("--save-every", type=click.IntRange(min=1), default=None, help="Checkpoint every N steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (and save) after this much training time, even before --iterations.")
@click.option("--preview-every", type=click.IntRange(min=1), default=None, help="Preview grid every N steps.")
@click.option("--init-from", "init_from", type=click.Path(file_okay=False), default=None, metavar="MODEL_DIR",
              help="Start this new model from the weights of an existing model folder (e.g. train A->C from "
                   "an A->B model); without --preset/--config it also takes that folder's config.")
@click.option("--init-parts", type=click.Choice(INIT_PARTS), default=None,
              help="What --init-from loads: encoder (every weight outside the decoders; default) or all "
                   "(decoders and a gan's discriminators too). Optimisers and step start afresh.")
@device_option
@click.pass_context
def train_swap(ctx: click.Context, faces_a: str, faces_b: str, model_dir: str, preset: str | None,
               config_file: str | None, overrides: tuple[str, ...], iterations: int | None,
               batch_size: int | None, save_every: int | None, minutes: float | None,
               preview_every: int | None, init_from: str | None, init_parts: str | None,
               device: str | None) -> None:
    """Train a shared-encoder/two-decoder swap model (A <-> B) and write MODEL_DIR.

    \b
    Examples:
      dfk train-swap -A data/faces_alice -B data/faces_bob -o data/model --iterations 20000
      dfk train-swap -A faces_a -B faces_b -o model_gan --preset gan --set train.precision=bf16
      dfk train-swap -A data/faces_alice -B data/faces_carol -o data/model_ac --init-from data/model
      torchrun --nproc_per_node=4 -m deepfake_cli train-swap -A faces_a -B faces_b -o model --preset hires

    Under torchrun each process (rank) trains --batch-size faces per identity on its own GPU
    (global batch = batch size x ranks); only rank 0 writes MODEL_DIR.
    """
    if init_parts is not None and init_from is None:
        raise click.UsageError("--init-parts needs --init-from")
    config_dir = model_dir
    if init_from is not None and not (preset or config_file or (Path(model_dir) / CONFIG_FILE).is_file()):
        config_dir = init_from  # a new model takes the source's settings unless a preset or file says otherwise
    config = swap_config(config_dir, preset, config_file,
                         train_overrides(overrides, iterations=iterations, batch_size=batch_size,
                                         save_every=save_every, preview_every=preview_every))
    options = settings(ctx)
    main_rank = quiet_other_ranks()
    summary = run_train_swap(faces_a, faces_b, model_dir, config, device=resolve_device_name(ctx, device),
                             seed=options.seed, progress=options.show_progress, minutes=minutes,
                             init_from=init_from, init_parts=init_parts or INIT_PARTS[0])
    if main_rank:
        click.echo(summary.line())
