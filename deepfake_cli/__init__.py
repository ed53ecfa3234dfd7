"""dfk: make face-swap deepfakes and detect them, from one command-line toolkit."""

__version__ = "0.1.0"
