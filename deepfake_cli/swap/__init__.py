"""The swap stage: train a shared-encoder/two-decoder face-swap model and load it for convert.

Public API: ``train_swap`` + ``swap_config`` (training), ``load_swap_model`` -> ``SwapModel``
(inference), ``SwapConfig`` (the typed hyper-parameters of ``configs/swap/*.yaml``).
"""

from deepfake_cli.swap.loader import SwapModel, load_swap_model
from deepfake_cli.swap.schema import SwapConfig
from deepfake_cli.swap.train import TrainSummary, swap_config, train_swap

__all__ = ["SwapConfig", "SwapModel", "TrainSummary", "load_swap_model", "swap_config", "train_swap"]
