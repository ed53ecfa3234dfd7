"""dfk: make face-swap deepfakes and detect them, from one command-line toolkit."""

__version__ = "0.1.0"

# Where models may run (``--device``); resolved by ``deepfake_cli.runtime.resolve_device``.
DEVICE_CHOICES = ("auto", "cpu", "cuda")
