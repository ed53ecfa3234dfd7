"""``dfk synth``: faces of nobody (and latent-walk clips) from a trained face GAN."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings
from deepfake_cli.synth import synthesize


@click.command("synth")
@click.option("-m", "--model", "model_dir", required=True, type=click.Path(), help="Model folder of train-facegan.")
@click.option("-n", "count", type=int, required=True, help="How many face PNGs to write (at least 1).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", type=int, default=None, help="Noise seed (default: the global --seed); same seed, same faces.")
@click.option("--videos", type=int, default=0, show_default=True, help="Latent-walk clips (mp4) to write too.")
@click.option("--frames", type=int, default=48, show_default=True, help="Frames per clip (24 fps).")
@device_option
@click.pass_context
def synth(ctx: click.Context, model_dir: str, count: int, out_dir: str, seed: int | None, videos: int,
          frames: int, device: str | None) -> None:
    """Write N synthetic faces (PNG) to DIR, each labelled as synthetic media.

    \b
    Examples:
      dfk synth -m models/facegan -n 100 -o fakes/synth
      dfk synth -m models/facegan -n 10 -o fakes/synth --videos 4 --frames 72 --seed 7
    """
    summary = synthesize(model_dir, count, out_dir, seed=settings(ctx).seed if seed is None else seed,
                         videos=videos, frames=frames, device=resolve_device_name(ctx, device),
                         progress=settings(ctx).show_progress)
    click.echo(summary.line())
