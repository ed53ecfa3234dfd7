"""Shared pieces of the click commands: settings, logging, common options."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import click
import tqdm

from deepfake_cli import device_name_error
from deepfake_cli.config import available_presets
from deepfake_cli.errors import ConfigError
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE
from deepfake_cli.media.shards import SLURM_TASK_VARIABLE, Shard, parse_shard


@dataclass
class Settings:
    """Global options given before the subcommand."""

    device: str = "auto"
    seed: int = 0
    debug: bool = False
    verbosity: int = 0

    @property
    def show_progress(self) -> bool:
        """Progress bars are shown unless ``--quiet``."""
        return self.verbosity >= 0


class _TqdmHandler(logging.Handler):
    """Log through ``tqdm.write`` so messages do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.tqdm.write(self.format(record), file=click.get_text_stream("stderr"))


def setup_logging(verbosity: int) -> None:
    """Configure the ``deepfake_cli`` logger: -q warnings only, default info, -v debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger = logging.getLogger("deepfake_cli")
    logger.handlers.clear()
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbosity > 0 else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def quiet_other_ranks() -> bool:
    """Whether this process is rank 0; under torchrun the other ranks only log errors (rank 0 reports)."""
    from deepfake_cli.runtime import rank  # torch is imported by the training commands only

    if rank() == 0:
        return True
    logging.getLogger("deepfake_cli").setLevel(logging.ERROR)
    return False


def settings(ctx: click.Context) -> Settings:
    """The global settings of this invocation (defaults when called without the group)."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else Settings()


class DeviceName(click.ParamType):
    """A ``--device`` value: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (checked without importing torch).

    A bad value raises ``ConfigError``, so the CLI prints one line ``error: unknown device ...``
    rather than click's usage block; whether the GPU exists is checked when the device is resolved.
    """

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        name = str(value).strip().lower()
        problem = device_name_error(name)
        if problem:
            raise ConfigError(problem, "--device")
        return name


DEVICE = DeviceName()


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--device`` to a command; it overrides the global ``dfk --device``."""
    return click.option("--device", type=DEVICE, default=None,
                        help="Where models run: auto, cpu, cuda or cuda:N (default: the global --device, "
                             "auto).")(func)


def reference_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--reference IMAGE|FOLDER`` (described by ``help_text``) and ``--reference-distance``."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option("--reference-distance", type=float, default=SAME_PERSON_DISTANCE, show_default=True,
                            help="Largest descriptor distance to the --reference that counts as the same "
                                 "person.")(func)
        return click.option("--reference", type=click.Path(path_type=str), default=None, metavar="IMAGE|FOLDER",
                            help=help_text)(func)
    return decorate


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--preset``, ``--config FILE`` and repeatable ``--set key.sub=value``."""
    func = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override one config key, e.g. --set train.lr=1e-4 (repeatable).")(func)
    func = click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                        help="YAML file merged over the preset.")(func)
    return func


def model_folder_options(stage: str, default_preset: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A trainer's ``-o/--output MODEL_DIR`` (resumed when run again) and ``--preset`` (one of
    ``stage``'s presets; default the folder's own config when resuming, else ``default_preset``)."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option("--preset", default=None,
                            help=f"One of: {', '.join(available_presets(stage))} (default: the folder's own config "
                                 f"when resuming, else {default_preset}).")(func)
        return click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False),
                            help="Model folder; running again on it resumes training.")(func)
    return decorate


def train_overrides(overrides: tuple[str, ...], **shortcuts: Any) -> list[str]:
    """``overrides`` and then ``train.<key>=<value>`` for each shortcut option given (not None)."""
    return [*overrides, *(f"train.{key}={value}" for key, value in shortcuts.items() if value is not None)]


class ShardType(click.ParamType):
    """``K/N`` or ``auto/N`` -> ``Shard``; a bad value raises ``ConfigError`` (one ``error:`` line)."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Shard:
        return value if isinstance(value, Shard) else parse_shard(str(value))


def shard_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--shard K/N`` (or ``auto/N``): process only one shard of the sorted input files."""
    return click.option(
        "--shard", type=ShardType(), default=None,
        help="Process only shard K of N: the input files at 0-based positions i (sorted order) with "
             f"i % N == K-1; run all N shards to cover every file. auto/N takes K = ${SLURM_TASK_VARIABLE}, "
             f"which must be in 1..N (submit the array as --array=1-N; an array starting at 0 is refused).",
    )(func)


def resolve_device_name(ctx: click.Context, device: str | None) -> str:
    """The command's ``--device`` if given, else the global one."""
    return device or settings(ctx).device
