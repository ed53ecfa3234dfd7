"""``dfk train-swap``: train a face-swap model on two aligned face sets."""

from __future__ import annotations

import click

from deepfake_cli.commands import config_options, device_option, resolve_device_name, settings
from deepfake_cli.config import available_presets
from deepfake_cli.swap.train import swap_config
from deepfake_cli.swap.train import train_swap as run_train_swap

# Command-line shortcuts for train.* config keys.
SHORTCUTS = ("iterations", "batch_size", "save_every", "preview_every")


@click.command("train-swap")
@click.option("-A", "faces_a", required=True, type=click.Path(file_okay=False),
              help="Extract folder of identity A (aligned PNGs + alignments.json).")
@click.option("-B", "faces_b", required=True, type=click.Path(file_okay=False),
              help="Extract folder of identity B.")
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model folder; running again on it resumes training.")
@click.option("--preset", default=None,
              help=f"One of: {', '.join(available_presets('swap'))} (default: the folder's own config when "
                   "resuming, else original).")
@config_options
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Total step to reach (resuming continues up to it).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Faces per identity per step.")
@click.option("--save-every", type=click.IntRange(min=1), default=None, help="Checkpoint every N steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (and save) after this much training time, even before --iterations.")
@click.option("--preview-every", type=click.IntRange(min=1), default=None, help="Preview grid every N steps.")
@device_option
@click.pass_context
def train_swap(ctx: click.Context, faces_a: str, faces_b: str, model_dir: str, preset: str | None,
               config_file: str | None, overrides: tuple[str, ...], iterations: int | None,
               batch_size: int | None, save_every: int | None, minutes: float | None,
               preview_every: int | None, device: str | None) -> None:
    """Train a shared-encoder/two-decoder swap model (A <-> B) and write MODEL_DIR.

    \b
    Examples:
      dfk train-swap -A data/faces_alice -B data/faces_bob -o data/model --iterations 20000
      dfk train-swap -A faces_a -B faces_b -o model_gan --preset gan --set train.precision=bf16
    """
    values = dict(zip(SHORTCUTS, (iterations, batch_size, save_every, preview_every), strict=True))
    shortcuts = [f"train.{key}={value}" for key, value in values.items() if value is not None]
    config = swap_config(model_dir, preset, config_file, [*overrides, *shortcuts])
    options = settings(ctx)
    summary = run_train_swap(faces_a, faces_b, model_dir, config, device=resolve_device_name(ctx, device),
                             seed=options.seed, progress=options.show_progress, minutes=minutes)
    click.echo(summary.line())
