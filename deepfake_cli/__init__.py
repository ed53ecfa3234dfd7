"""dfk: make face-swap deepfakes and detect them, from one command-line toolkit."""

import re

__version__ = "0.1.0"

# Where models may run (``--device``); resolved by ``deepfake_cli.runtime.resolve_device``.
# ``cuda:N`` picks GPU N (``cuda`` is the current one, normally 0).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name_error(name: str) -> str | None:
    """Why ``name`` is not a ``--device`` value, or None if it is one (no torch import: used at parse time)."""
    if _DEVICE_NAME.fullmatch(name):
        return None
    return f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (N: a GPU index, e.g. cuda:1)"
