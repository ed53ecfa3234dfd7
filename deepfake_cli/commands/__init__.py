"""Shared pieces of the click commands: settings, logging, common options."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import click
import tqdm

from deepfake_cli import DEVICE_CHOICES


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


def settings(ctx: click.Context) -> Settings:
    """The global settings of this invocation (defaults when called without the group)."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else Settings()


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--device`` to a command; it overrides the global ``dfk --device``."""
    return click.option("--device", type=click.Choice(DEVICE_CHOICES), default=None,
                        help="Where models run (default: the global --device, auto).")(func)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--preset``, ``--config FILE`` and repeatable ``--set key.sub=value``."""
    func = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override one config key, e.g. --set train.lr=1e-4 (repeatable).")(func)
    func = click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                        help="YAML file merged over the preset.")(func)
    return func


def resolve_device_name(ctx: click.Context, device: str | None) -> str:
    """The command's ``--device`` if given, else the global one."""
    return device or settings(ctx).device
