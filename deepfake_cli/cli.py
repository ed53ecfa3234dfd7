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
from deepfake_cli.commands import DEVICE, Settings, setup_logging
from deepfake_cli.errors import DfkError

# Command name -> (module in deepfake_cli.commands, click command attribute, one-line help).
# Modules are imported only when their command runs, so `dfk --help` starts fast.
COMMANDS = {
    "extract": ("extract", "extract", "Find, landmark and align faces (PNGs + alignments.json)."),
    "sort": ("sort", "sort", "Sort extracted faces: main person, blurry, misaligned, near-duplicates."),
    "train-swap": ("train_swap", "train_swap", "Train a face-swap model on two face sets (resumable)."),
    "convert": ("convert", "convert", "Swap faces in a video, image or folder with a trained model."),
    "train-detect": ("train_detect", "train_detect", "Train a deepfake detector (ConvLSTM, EfficientNet, ...)."),
    "detect": ("detect", "detect", "Score videos/images as real or fake."),
    "calibrate": ("calibrate", "calibrate", "Reset a detector's threshold from known-real footage (target FPR)."),
    "evaluate": ("evaluate", "evaluate", "Measure a swap: identity, landmark NME, sharpness, mouth, seam, background PSNR."),
    "make-dataset": ("make_dataset", "make_dataset", "Make a labelled real/fake dataset with swap models."),
    "demo": ("demo", "demo", "Run the whole pipeline offline on embedded data, with a report."),
}


class LazyGroup(click.Group):
    """A click group that imports each command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, _ = entry
        return getattr(importlib.import_module(f"deepfake_cli.commands.{module}"), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, _, text) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="dfk")
@click.option("--device", type=DEVICE, default="auto", show_default=True,
              help="Where models run: auto, cpu, cuda or cuda:N (GPU N); commands accept --device too.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for reproducible runs.")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for more).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def dfk(ctx: click.Context, device: str, seed: int, debug: bool, verbose: int, quiet: bool) -> None:
    """dfk: make face-swap deepfakes and detect them.

    \b
    Pipeline: extract -> sort -> train-swap -> convert; train-detect -> [calibrate] -> detect.
    Try `dfk demo -o runs/demo --quick` to see every stage work offline.
    """
    ctx.obj = Settings(device=device, seed=seed, debug=debug, verbosity=-1 if quiet else verbose)
    setup_logging(ctx.obj.verbosity)
    from deepfake_cli.runtime import configure_threads  # torch loads only when a command runs

    configure_threads()


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
