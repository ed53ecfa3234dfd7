"""``dfk detect``: score videos, images or a labelled dataset with a trained detector."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from deepfake_cli.checkpoint import write_text_atomic
from deepfake_cli.commands import device_option, reference_options, resolve_device_name, settings
from deepfake_cli.detect import Detector, annotate_video, read_dataset
from deepfake_cli.detect.report import (
    detection_document, detection_rows, detection_summary, evaluation_document, render,
)
from deepfake_cli.errors import InputError
from deepfake_cli.media.video import is_video

log = logging.getLogger(__name__)


@click.command("detect")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=str))
@click.option("-m", "--model", "model_dir", required=True, type=click.Path(file_okay=False), metavar="DETECTOR_DIR",
              help="A detector directory written by train-detect.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the results here (atomically); default: print them.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default=None,
              help="Output format (default: csv for a .csv FILE, else json).")
@click.option("--threshold", type=float, default=None, metavar="P",
              help="Probability of fake at or above which an input is called fake (default: the detector's "
                   "stored threshold, from train-detect or dfk calibrate).")
@click.option("--annotate", type=click.Path(dir_okay=False), default=None, metavar="OUT.mp4",
              help="Also write the (single) input video with a per-frame fake-probability overlay.")
@click.option("--dataset", type=click.Path(path_type=str), default=None, metavar="ROOT",
              help="Score a labelled dataset (any train-detect layout) and report metrics instead.")
@click.option("--cache", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Face cache folder (default: DETECTOR_DIR/faces).")
@reference_options("Score only this person's face in videos and images with several people: an image, a folder "
                   "of images or an extract folder of them (matched by dlib's identity descriptor).")
@device_option
@click.pass_context
def detect(ctx: click.Context, inputs: tuple[str, ...], model_dir: str, output: str | None, fmt: str | None,
           threshold: float | None, annotate: str | None, dataset: str | None, cache: str | None,
           reference: str | None, reference_distance: float, device: str | None) -> None:
    """Score videos or images: probability of fake per input, per sequence and per frame.

    \b
    Examples:
      dfk detect clip.mp4 -m runs/detector --annotate clip_scored.mp4
      dfk detect data/*.mp4 -m runs/detector -o scores.csv --format csv
      dfk detect --dataset data/ffpp -m runs/detector -o ffpp_metrics.json
      dfk detect party.mp4 -m runs/detector --reference alice.jpg
    """
    if bool(inputs) == bool(dataset):
        raise InputError("give input videos/images, or --dataset ROOT (not both)")
    if annotate and (dataset or len(inputs) != 1 or not is_video(Path(inputs[0]))):
        raise InputError("--annotate needs exactly one input video")
    progress = settings(ctx).show_progress
    fmt = fmt or ("csv" if output and output.lower().endswith(".csv") else "json")
    detector = Detector(model_dir, device=resolve_device_name(ctx, device), threshold=threshold, cache_dir=cache,
                        reference=reference, reference_distance=reference_distance)
    log.info("detect: %s", detector.describe_threshold())
    if dataset:
        roc = Path(output).with_suffix(".roc.png") if output else None
        evaluation = detector.evaluate(read_dataset(dataset), progress, roc=roc)
        text = render(evaluation_document(evaluation, model_dir, dataset), evaluation["videos"], fmt)
    else:
        results = detector.score_all(list(inputs), progress)
        text = render(detection_document(results, model_dir, detector.threshold, detector.threshold_from,
                                         detector.calibration),
                      detection_rows(results, detector.threshold), fmt)
        log.info("detect: %s", detection_summary(results))
        if annotate:
            scored = [r for r in results if r.status == "ok"]
            if scored:
                annotate_video(inputs[0], scored[0], annotate, detector.config.faces.every_n)
            else:
                log.warning("no face found in %s; no annotated video written", inputs[0])
    if output:
        write_text_atomic(output, text)
        log.info("detect: results written to %s", output)
    else:
        click.echo(text, nl=False)
