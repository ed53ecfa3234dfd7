"""The convert stage: swap faces in videos, images and folders with a trained swap model.

Public API: ``convert(input, output, model_dir, options)`` -> ``ConvertSummary``, ``ConvertOptions``,
``ConvertError`` and ``DIRECTIONS``. ``run`` drives a conversion, ``frames`` does the per-frame work
(align, swap, paste back) and ``media.provenance`` tags the output as synthetic; faces are found and
followed by ``faces.follow`` and the model is loaded with ``swap.load_swap_model``.
"""

from deepfake_cli.convert.run import DIRECTIONS, ConvertError, ConvertOptions, ConvertSummary, convert

__all__ = ["DIRECTIONS", "ConvertError", "ConvertOptions", "ConvertSummary", "convert"]
