"""``dfk demo``: the whole pipeline offline on embedded data, with a report."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings
from deepfake_cli.demo import run_demo


@click.command("demo")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo makes (clips, faces, model, videos, report).")
@click.option("--quick", is_flag=True, help="Smoke run in about 3 minutes on a CPU (quality not expected).")
@device_option
@click.pass_context
def demo(ctx: click.Context, outdir: str, quick: bool, device: str | None) -> None:
    """Run extract, train-swap, convert, evaluate, make-dataset, train-detect and detect offline.

    \b
    Example:
      dfk demo -o runs/demo            # ~15 minutes on a laptop CPU
      dfk demo -o runs/demo --quick    # ~3 minutes, smoke run
    """
    run = settings(ctx)
    page = run_demo(outdir, quick=quick, device=resolve_device_name(ctx, device), seed=run.seed,
                    progress=run.show_progress)
    click.echo(f"demo: report written to {page}")
