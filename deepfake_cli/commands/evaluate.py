"""``dfk evaluate``: objective quality of a face swap."""

from __future__ import annotations

import json

import click

from deepfake_cli.checkpoint import write_json_atomic
from deepfake_cli.commands import settings
from deepfake_cli.evaluate import evaluate as run_evaluate


@click.command("evaluate")
@click.argument("source", type=click.Path(path_type=str))
@click.argument("converted", type=click.Path(path_type=str))
@click.option("--a", "identity_a", required=True, type=click.Path(),
              help="Identity A (the source's person): extract folder, image, folder or video.")
@click.option("--b", "identity_b", required=True, type=click.Path(),
              help="Identity B (the swapped-in person): extract folder, image, folder or video.")
@click.option("--margin", type=float, default=0.1, show_default=True,
              help="How much nearer B than A a face must be to count as transferred.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
@click.pass_context
def evaluate(ctx: click.Context, source: str, converted: str, identity_a: str, identity_b: str, margin: float,
             output: str | None) -> None:
    """Measure a swap: identity transfer, landmark NME, sharpness, mouth agreement, seam
    strength, background PSNR, faces found.

    \b
    Example:
      dfk evaluate data/alice.mp4 out/alice_as_bob.mp4 --a data/faces_alice --b data/faces_bob -o quality.json
    """
    quality = run_evaluate(source, converted, identity_a, identity_b, margin=margin,
                           progress=settings(ctx).show_progress)
    figures = quality.to_json()
    if output:
        write_json_atomic(output, figures)
    click.echo(json.dumps(figures))
