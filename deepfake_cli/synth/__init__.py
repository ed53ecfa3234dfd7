"""Whole-face synthesis: a GAN trained on face folders makes faces of nobody (train-facegan, synth).

``train_facegan`` trains or resumes a model folder; ``synthesize`` writes labelled faces and
latent-walk clips from one. ``model.py`` holds the networks (plain ``nn.Module``s), ``gan.py`` one
adversarial step, ``augment.py`` the differentiable augmentation, ``quality.py`` the Fréchet
distance of feature statistics used by ``scripts/bench_synth.py``.
"""

from deepfake_cli.synth.sample import synthesize
from deepfake_cli.synth.train import facegan_config, train_facegan

__all__ = ["facegan_config", "synthesize", "train_facegan"]
