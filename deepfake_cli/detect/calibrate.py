"""Resetting a trained detector's decision threshold from known-real footage (``dfk calibrate``).

A threshold chosen on validation (``train.threshold``) holds for footage like the validation
videos. Real footage from elsewhere (another camera, compression, lighting) often scores higher,
so a detector flags far more of it than its validation false-positive rate promised. ``calibrate``
scores footage known to be real, as ``dfk detect`` does (each input's video-level probability:
the mean over all its faces; an image's frame-level one), and moves the threshold so that at most
``fpr`` of that footage is called fake, with the rule ``train.threshold: fpr:P`` uses
(``metrics.fpr_threshold``). No fakes are needed, so it cannot say what the move costs in missed
fakes; it moves the operating point and cannot make a detector that does not separate reals from
fakes separate them. With n inputs the smallest nonzero rate it can measure is 1/n.

The threshold is written atomically into the detector's ``state.json`` (the one ``Detector``
reads) with ``threshold_from: "calibrate"`` and a ``calibration`` record: the folder, what was
scored and skipped, the target and the rate reached on that footage, the threshold it replaced
and the training-time one (kept across re-calibrations, so ``reset`` restores it), the date.
``metrics.json`` stays the training run's record, computed at the training threshold.

It refuses footage the detector's own training run used, as listed in ``inputs.json`` (written
by ``train-detect``): the test part (never calibrate on a dataset's test split: its figures
would stop being a test) and the train and validation parts (the detector has seen them, so
they score too low). A detector trained before ``inputs.json`` existed records no inputs: it is
calibrated with a warning and ``training_inputs_checked: false``. Inputs are compared by their
absolute path, so a copy of a training video under another path is not recognised.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deepfake_cli import __version__
from deepfake_cli.checkpoint import STATE_FILE, read_json
from deepfake_cli.detect.detector import read_state, replace_state
from deepfake_cli.detect.inference import DetectionResult, Detector
from deepfake_cli.detect.layouts import input_paths
from deepfake_cli.detect.metrics import fpr_threshold
from deepfake_cli.detect.trainer import INPUTS_FILE
from deepfake_cli.errors import CheckpointError, InputError, NoFaceError

log = logging.getLogger(__name__)

DEFAULT_FPR = 0.05
CALIBRATED = "calibrate"  # state.json's threshold_from after a calibration


def calibrate(model_dir: str | Path, real: str | Path, fpr: float = DEFAULT_FPR, *, device: str = "auto",
              cache_dir: str | Path | None = None, dry_run: bool = False, progress: bool = False) -> dict[str, Any]:
    """Set the threshold of the detector in ``model_dir`` so that at most ``fpr`` of the real
    footage in ``real`` (videos, images or extract folders; a folder is searched as ``dfk detect``
    searches it) is called fake. Returns the ``calibration`` record plus ``threshold`` and
    ``written``; with ``dry_run`` nothing is written.

    Raises ``InputError`` for a bad ``fpr``, a folder without inputs or footage this detector was
    trained, validated or tested on, and ``NoFaceError`` when no input shows a face; state.json is
    then left as it was."""
    if not (isinstance(fpr, (int, float)) and math.isfinite(fpr) and 0.0 < fpr < 1.0):
        raise InputError(f"--fpr must be between 0 and 1, got {fpr}")
    folder = Path(model_dir)
    state = _state(folder)
    inputs = input_paths(Path(real))
    checked = _refuse_training_inputs(folder, inputs)
    detector = Detector(folder, device=device, cache_dir=cache_dir)
    results = detector.score_all(list(inputs), progress)
    scored = [r for r in results if r.status == "ok" and r.probability is not None]
    if not scored:
        raise NoFaceError(f"no face found in any of the {len(inputs)} inputs; nothing to calibrate on", str(real))
    chosen = fpr_threshold([float(r.probability) for r in scored if r.probability is not None], fpr)
    previous = {"threshold": state.get("threshold"), "threshold_from": state.get("threshold_from")}
    trained = (state.get("calibration") or {}).get("trained", previous)
    record: dict[str, Any] = {
        "folder": str(Path(real).resolve()),
        "videos": sum(not r.still for r in scored), "images": sum(r.still for r in scored),
        "skipped_no_face": _listed(results, "no_face"), "skipped_unreadable": _listed(results, "error"),
        "fpr_target": fpr, "fpr_reached": round(chosen.reached, 6), "flagged": chosen.flagged,
        "rule": f"fpr<={fpr:g} on the folder's video-level probabilities (as train.threshold fpr:P)",
        "previous": previous, "trained": trained, "training_inputs_checked": checked,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tool": f"dfk {__version__}",
    }
    _warn_about(chosen.reals, fpr, chosen.reached)
    if not dry_run:
        replace_state(folder, state | {"threshold": chosen.threshold, "threshold_from": CALIBRATED,
                                       "calibration": record})
    return record | {"threshold": chosen.threshold, "written": not dry_run}


def reset(model_dir: str | Path, dry_run: bool = False) -> dict[str, Any]:
    """Restore the training-time threshold a calibration replaced (and drop the ``calibration``
    record). Returns ``{threshold, threshold_from, was, calibrated, written}``; a detector never
    calibrated is left as it is (``calibrated`` and ``written`` False)."""
    folder = Path(model_dir)
    state = _state(folder)
    was = {"threshold": state.get("threshold"), "threshold_from": state.get("threshold_from")}
    calibration = state.get("calibration")
    if not calibration:
        return was | {"was": was, "calibrated": False, "written": False}
    trained = calibration["trained"]
    if not dry_run:
        restored = {k: v for k, v in state.items() if k != "calibration"} | trained
        replace_state(folder, restored)
    return dict(trained) | {"was": was, "calibrated": True, "written": not dry_run}


def _state(folder: Path) -> dict[str, Any]:
    """The detector's state.json (a finished train-detect run has one)."""
    state = read_state(folder)
    if state is None:
        raise CheckpointError("not a trained detector directory (no state.json)", str(folder))
    return state


def _refuse_training_inputs(folder: Path, inputs: list[Path]) -> bool:
    """Raise when an input is one the detector's training run used (``inputs.json``); returns
    whether there was a record to check against."""
    if not (folder / INPUTS_FILE).is_file():
        log.warning("%s records no training inputs (no %s: trained by an older dfk); cannot check that the "
                    "footage is not its training or test data", folder, INPUTS_FILE)
        return False
    parts = read_json(folder / INPUTS_FILE).get("parts", {})
    given = {str(p.resolve()): p for p in inputs}
    used = {name: sorted(set(given) & set(paths)) for name, paths in parts.items()}
    if used.get("test"):
        raise InputError(f"{len(used['test'])} of the {len(inputs)} inputs are this detector's test part "
                         f"(e.g. {given[used['test'][0]]}); never calibrate on a dataset's test split")
    seen = [p for name in sorted(used) if name != "test" for p in used[name]]
    if seen:
        names = "/".join(name for name in sorted(used) if name != "test" and used[name])
        raise InputError(f"{len(set(seen))} of the {len(inputs)} inputs trained or validated this detector ({names} "
                         f"part, e.g. {given[seen[0]]}); it scores footage it has seen too low: calibrate on real "
                         "footage it has not seen")
    return True


def _listed(results: list[DetectionResult], status: str) -> int:
    return sum(r.status == status for r in results)


def _warn_about(reals: int, fpr: float, reached: float) -> None:
    if reached > fpr:
        log.warning("a real input scores at the top of the probability range: fpr %.4g on this footage is above "
                    "the target %g", reached, fpr)
    if reals * fpr < 1:
        log.warning("with %d real inputs the smallest nonzero false-positive rate measurable is 1/%d = %.3g > %g: "
                    "the threshold sits just above every real score; more real footage makes it a better estimate",
                    reals, reals, 1 / reals, fpr)


def calibration_summary(outcome: dict[str, Any], model_dir: str | Path) -> str:
    """One line for the terminal after ``dfk calibrate``."""
    previous = outcome["previous"]
    was = (f"was {previous['threshold']:g} from {previous['threshold_from']}"
           if previous.get("threshold") is not None else "none stored before")
    skipped = outcome["skipped_no_face"] + outcome["skipped_unreadable"]
    counted = f"{outcome['videos']} real videos" + (f" + {outcome['images']} images" if outcome["images"] else "")
    where = f"-> {Path(model_dir) / STATE_FILE}" if outcome["written"] else "(dry run: nothing written)"
    return (f"calibrate: threshold {outcome['threshold']:g} ({was}): fpr {outcome['fpr_reached']:.4g} "
            f"(target {outcome['fpr_target']:g}) on {counted} of {outcome['folder']}"
            f"{f', {skipped} without a face or unreadable skipped' if skipped else ''} {where}")
