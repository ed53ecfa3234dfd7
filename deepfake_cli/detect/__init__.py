"""The detection stage: face sequences, a registry of detectors (ConvLSTM, EfficientNet, ...), metrics.

Python API (the CLI commands ``train-detect`` and ``detect`` are thin wrappers)::

    from deepfake_cli.config import load_config
    from deepfake_cli.detect import DetectConfig, Detector, from_paths, read_dataset, train_detector

    config = load_config(DetectConfig, "detect", "tiny")
    report = train_detector(from_paths(["real/"], ["fake/"]), "runs/det", config)
    results = Detector("runs/det").score_all(["clip.mp4"])

    from deepfake_cli.detect.calibrate import calibrate  # dfk calibrate: threshold from real footage
    calibrate("runs/det", "data/office_cameras", fpr=0.05)
"""

from deepfake_cli.detect.config import DetectConfig, validate
from deepfake_cli.detect.inference import DetectionResult, Detector, annotate_video
from deepfake_cli.detect.layouts import LabelledInput, from_paths, read_dataset
from deepfake_cli.detect.models import MODELS
from deepfake_cli.detect.models.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMDetector
from deepfake_cli.detect.trainer import train_detector

__all__ = [
    "MODELS", "ConvLSTM", "ConvLSTMCell", "ConvLSTMDetector", "DetectConfig", "DetectionResult", "Detector",
    "LabelledInput", "annotate_video", "from_paths", "read_dataset", "train_detector", "validate",
]
