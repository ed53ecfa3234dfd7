"""Face reenactment: one photo animated by the head motion and expression of a driving video.

Public API: ``reenact(photo, driving, output, options, model_dir)`` -> ``ReenactSummary`` and
``ReenactOptions``. ``base`` defines the ``Animator`` interface, ``warp`` the training-free
landmark-warp baseline, ``run`` streams the driving video and writes the labelled output.
"""

from deepfake_cli.reenact.run import ReenactOptions, ReenactSummary, reenact

__all__ = ["ReenactOptions", "ReenactSummary", "reenact"]
