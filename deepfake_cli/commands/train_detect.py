"""``dfk train-detect``: train a deepfake detector (ConvLSTM, EfficientNet, ...) on real and fake videos."""

from __future__ import annotations


import click

from deepfake_cli.commands import config_options, device_option, quiet_other_ranks, resolve_device_name, settings
from deepfake_cli.config import available_presets, load_config
from deepfake_cli.detect import DetectConfig, from_paths, read_dataset, train_detector, validate
from deepfake_cli.detect.report import training_summary
from deepfake_cli.errors import InputError


@click.command("train-detect")
@click.option("--real", multiple=True, type=click.Path(path_type=str), metavar="PATH",
              help="Real videos, folders of videos, or extract output folders (repeatable).")
@click.option("--fake", multiple=True, type=click.Path(path_type=str), metavar="PATH",
              help="Fake videos, folders of videos, or extract output folders (repeatable).")
@click.option("--synthetic", type=click.Choice(["none", "sbi"]), default=None,
              help="sbi: also train on self-blended fakes made on the fly from the real faces (their 68 "
                   "landmarks); with --real alone every training fake is one. Sets train.synthetic "
                   "(default: the preset's, none).")
@click.option("--dataset", type=click.Path(path_type=str), metavar="ROOT",
              help="A labelled dataset: real/+fake/ folders, DFDC metadata.json, FaceForensics++ or a CSV path,label.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), metavar="DETECTOR_DIR",
              help="Detector directory: model.pt, config.yaml, state.json, metrics.json, plots, face cache. The "
                   "same directory again resumes an unfinished run (a finished one is reported).")
@click.option("--preset", default="convlstm", show_default=True,
              help=f"Named config, one per detector: {', '.join(available_presets('detect'))}.")
@config_options
@click.option("--folds", type=int, default=1, show_default=True,
              help="K-fold cross-validation by source group over everything outside the test part; reports "
                   "each fold and mean ± std over folds, and keeps for detect the model of the fold with the best "
                   "validation score.")
@device_option
@click.pass_context
def train_detect(ctx: click.Context, real: tuple[str, ...], fake: tuple[str, ...], synthetic: str | None,
                 dataset: str | None, outdir: str, preset: str, config_file: str | None, overrides: tuple[str, ...],
                 folds: int, device: str | None) -> None:
    """Train a deepfake detector on face crops: a sequence model (convlstm: Canny-edged face
    sequences) or a frame model (efficientnet_b0/b4, tiny_frame: single faces).

    \b
    Examples:
      dfk train-detect --real data/real --fake data/fake -o runs/detector --preset tiny
      dfk train-detect --dataset data/dfdc_part0 -o runs/dfdc --folds 5
      dfk train-detect --dataset data/ffpp -o runs/effb4 --preset efficientnet_b4
      dfk train-detect --real data/real --synthetic sbi -o runs/sbi --preset tiny_frame
      torchrun --nproc_per_node=4 -m deepfake_cli train-detect --dataset data/dfdc -o runs/dfdc

    Under torchrun each process (rank) trains on its own share of every epoch, train.batch_size
    samples per step on its own GPU (global batch = batch size x ranks); rank 0 alone validates
    (the others wait for its decision) and writes DETECTOR_DIR, which every rank must see on a
    shared filesystem.
    """
    if dataset and (real or fake):
        raise InputError("give either --dataset or --real/--fake, not both")
    if synthetic is not None:
        overrides = (*overrides, f"train.synthetic={synthetic}")
    config = validate(load_config(DetectConfig, "detect", preset, config_file, overrides))
    self_blended = config.train.synthetic != "none"
    if not dataset and not (real and (fake or self_blended)):
        raise InputError("give --dataset ROOT, or both --real and --fake, or --real with --synthetic sbi "
                         "(fakes self-blended from the real faces)")
    items = read_dataset(dataset) if dataset else from_paths(real, fake, fakes_required=not self_blended)
    options = settings(ctx)
    main_rank = quiet_other_ranks()
    report = train_detector(items, outdir, config, device=resolve_device_name(ctx, device), seed=options.seed,
                            folds=folds, progress=options.show_progress)
    if main_rank:
        click.echo(training_summary(report, outdir))
