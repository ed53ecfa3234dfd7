"""``dfk calibrate``: reset a trained detector's threshold from known-real footage."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings
from deepfake_cli.errors import InputError


@click.command("calibrate")
@click.option("-m", "--model", "model_dir", required=True, type=click.Path(file_okay=False), metavar="DETECTOR_DIR",
              help="A detector directory written by train-detect; its state.json gets the new threshold.")
@click.option("--real", type=click.Path(path_type=str), default=None, metavar="FOLDER",
              help="Footage known to be real (videos, extract folders; searched like detect's inputs), "
                   "not used to train, validate or test this detector.")
@click.option("--fpr", type=float, default=0.05, show_default=True, metavar="P",
              help="Largest share of FOLDER's inputs the detector may call fake (0 < P < 1).")
@click.option("--dry-run", is_flag=True, help="Score and report the threshold; write nothing.")
@click.option("--reset", is_flag=True, help="Restore the training-time threshold a calibration replaced.")
@click.option("--cache", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Face cache folder (default: DETECTOR_DIR/faces).")
@device_option
@click.pass_context
def calibrate(ctx: click.Context, model_dir: str, real: str | None, fpr: float, dry_run: bool, reset: bool,
              cache: str | None, device: str | None) -> None:
    """Set a detector's threshold so that at most P of some real footage is called fake.

    Every input in FOLDER is scored as `dfk detect` scores it (video-level probability of fake);
    the threshold moves to keep the false-positive rate on that footage at or below --fpr, with
    the rule of train.threshold fpr:P. No fakes are needed, and it only moves the operating point:
    it cannot make a detector that confuses reals and fakes tell them apart. With n inputs the
    smallest nonzero rate it can measure is 1/n. Calibrating again replaces the previous
    calibration; --reset restores the threshold chosen in training.

    \b
    Examples:
      dfk calibrate -m runs/detector --real data/office_cameras --fpr 0.05
      dfk calibrate -m runs/detector --real data/office_cameras --dry-run
      dfk calibrate -m runs/detector --reset
    """
    import deepfake_cli.detect.calibrate as api  # torch loads only when the command runs

    if reset:
        if real is not None:
            raise InputError("--reset restores the training threshold; it takes no --real")
        outcome = api.reset(model_dir, dry_run)
        if not outcome["calibrated"]:
            click.echo(f"calibrate: {model_dir} is not calibrated; threshold {outcome['threshold']} "
                       f"({outcome['threshold_from']}) unchanged")
            return
        done = "restored" if outcome["written"] else "would be restored (dry run: nothing written)"
        click.echo(f"calibrate: threshold {outcome['threshold']:g} ({outcome['threshold_from']}) {done}, "
                   f"replacing the calibrated {outcome['was']['threshold']:g}")
        return
    if real is None:
        raise InputError("give --real FOLDER of real footage (or --reset)")
    outcome = api.calibrate(model_dir, real, fpr, device=resolve_device_name(ctx, device), cache_dir=cache,
                            dry_run=dry_run, progress=settings(ctx).show_progress)
    click.echo(api.calibration_summary(outcome, model_dir))
