"""Detection output: the JSON document and the flat CSV rows written by ``dfk detect``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from deepfake_cli import __version__
from deepfake_cli.detect.inference import DetectionResult


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of equal keys as CSV text with a header line (empty text for no rows)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render(document: dict[str, Any], rows: list[dict[str, Any]], fmt: str) -> str:
    """Output text: the document as indented JSON, or the rows as CSV (``fmt`` json|csv)."""
    return csv_text(rows) if fmt == "csv" else json.dumps(document, indent=2) + "\n"


def detection_document(results: list[DetectionResult], detector: str, threshold: float,
                       threshold_from: str | None = None, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON output of ``dfk detect``: detector, threshold (the rule that set it, and the
    ``dfk calibrate`` record when it came from one) and one entry per input/source."""
    document: dict[str, Any] = {"tool": f"dfk {__version__}", "detector": detector, "threshold": threshold}
    if threshold_from is not None:
        document["threshold_from"] = threshold_from
    if calibration is not None:
        document["calibration"] = calibration
    return document | {"results": [r.to_json() for r in results]}


def detection_rows(results: list[DetectionResult], threshold: float) -> list[dict[str, Any]]:
    """CSV rows: one ``video`` (or ``frame``, for an image) row per result, then its ``sequence`` rows."""
    rows = []
    for result in results:
        frames = sorted(result.frames)
        base = {"input": result.input, "source": result.source or "", "status": result.status}
        rows.append({**base, "level": result.level,
                     "start_frame": frames[0] if frames else "", "end_frame": frames[-1] if frames else "",
                     "probability": "" if result.probability is None else round(result.probability, 6),
                     "label": result.label or ""})
        if not result.still:
            rows.extend({**base, "level": "sequence", "start_frame": s.frames[0], "end_frame": s.frames[-1],
                         "probability": round(s.probability, 6),
                         "label": "fake" if s.probability >= threshold else "real"}
                        for s in result.sequences)
    return rows


def detection_summary(results: list[DetectionResult]) -> str:
    """One line: how many inputs were called fake, real, had no face or failed."""
    counts = {"fake": 0, "real": 0, "no_face": 0, "error": 0}
    for result in results:
        counts[result.label if result.status == "ok" and result.label else result.status] += 1
    return (f"{counts['fake']} fake, {counts['real']} real, {counts['no_face']} without a face, "
            f"{counts['error']} unreadable")


def evaluation_document(evaluation: dict[str, Any], detector: str, dataset: str) -> dict[str, Any]:
    """The JSON output of ``dfk detect --dataset``: the training metrics computed on another set."""
    return {"tool": f"dfk {__version__}", "detector": detector, "dataset": dataset, **evaluation}


def _metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _levels(block: dict[str, Any], name: str) -> str:
    video, sequence = block["video"], block["sequence"]
    text = f"{name} video AUC {_metric(video['auc'])}, sequence AUC {_metric(sequence['auc'])}"
    if "frame" in block:
        text += f", frame AUC {_metric(block['frame']['auc'])}"
    return text + f", video accuracy {_metric(video['accuracy'])}, EER {_metric(video['eer'])}"


def _mean_std(summary: dict[str, Any], name: str) -> str:
    auc = summary["video"]["auc"]
    if auc["mean"] is None:
        return f"{name} video AUC n/a"
    return f"{name} video AUC {auc['mean']:.3f} ± {auc['std']:.3f}"


def training_summary(report: dict[str, Any], outdir: str) -> str:
    """One line for the terminal after ``train-detect``: validation (and test) figures, or with
    ``--folds`` their mean ± std over folds and which fold's model ``detect`` uses, and why."""
    threshold = f"threshold {report['threshold']:g}"
    if report.get("threshold_from"):
        threshold += f" ({report['threshold_from']})"
    if "cross_validation" in report:
        folds = len(report["folds"])
        parts = [_mean_std(summary, f"{folds}-fold {name}") for name, summary in report["cross_validation"].items()]
        line = (f"train-detect: {'; '.join(parts)} (the figures to quote); kept fold {report['kept_fold']} for "
                f"detect, by its own validation {report.get('monitor', 'score')} (optimistic), {threshold}")
    else:
        parts = [_levels(report["val"], "val")]
        if "test" in report:
            parts.append(_levels(report["test"], "test"))
        line = (f"train-detect: {'; '.join(parts)} at {threshold} "
                f"(epoch {report['best_epoch']}/{report['epochs_run']})")
    if report.get("already_done"):
        line = line.replace("train-detect: ", "train-detect: already trained in this folder (nothing to do): ", 1)
    return f"{line} -> {outdir}"
