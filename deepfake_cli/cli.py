"""The ``dfk`` command line: one click group, one thin command per pipeline stage.

Commands live in ``deepfake_cli/commands/<stage>.py``; each parses options and calls the stage's
Python API. ``main`` turns every ``DfkError`` into one line ``error: <what> (<where>)`` and a
non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from deepfake_cli import __version__
from deepfake_cli.commands import Settings, setup_logging
from deepfake_cli.errors import DfkError
from deepfake_cli.runtime import DEVICE_CHOICES

# Module name in deepfake_cli.commands -> click command attribute. Only implemented stages.
COMMAND_MODULES = {
    "extract": "extract",
    "train_swap": "train_swap",
    "convert": "convert",
    "evaluate": "evaluate",
    "make_dataset": "make_dataset",
    "demo": "demo",
    "train_detect": "train_detect",
    "detect": "detect",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="dfk")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True,
              help="Where models run; commands accept --device too.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for reproducible runs.")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for more).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def dfk(ctx: click.Context, device: str, seed: int, debug: bool, verbose: int, quiet: bool) -> None:
    """dfk: make face-swap deepfakes and detect them.

    \b
    Pipeline:
      extract       find, landmark and align faces (PNGs + alignments.json)
      train-swap    train a face-swap model on two face sets
      convert       swap faces in a video or image folder
      train-detect  train a ConvLSTM deepfake detector
      detect        score videos/images as real or fake
    """
    ctx.obj = Settings(device=device, seed=seed, debug=debug, verbosity=-1 if quiet else verbose)
    setup_logging(ctx.obj.verbosity)


for _module, _attr in COMMAND_MODULES.items():
    dfk.add_command(getattr(importlib.import_module(f"deepfake_cli.commands.{_module}"), _attr))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run ``dfk`` and map errors to one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        dfk.main(args=argv, prog_name="dfk", standalone_mode=False)
    except DfkError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        if debug:
            raise
        where = getattr(exc, "filename", None)
        click.echo(f"error: {exc.strerror or exc}" + (f" ({where})" if where else ""), err=True)
        sys.exit(1)
    finally:
        logging.shutdown()
