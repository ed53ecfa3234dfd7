"""``dfk make-dataset``: labelled real/fake videos for detector training."""

from __future__ import annotations

import click

from deepfake_cli.commands import device_option, resolve_device_name, settings, shard_option
from deepfake_cli.make_dataset import make_dataset as run_make_dataset
from deepfake_cli.media.shards import Shard
from deepfake_cli.convert import ConvertOptions


@click.command("make-dataset")
@click.option("--pair", "pairs", nargs=2, multiple=True, required=True, type=click.Path(),
              metavar="A_VIDEOS B_VIDEOS", help="Videos (file or folder) of identity A and of B; repeatable.")
@click.option("-m", "--model", "models", multiple=True, required=True, type=click.Path(file_okay=False),
              metavar="[K:]MODEL",
              help="A model that makes fakes (repeatable): a swap model trained on A and B, a reenactment model "
                   "(train-reenact) or 'warp' (the training-free reenactment baseline), or a face GAN "
                   "(train-facegan). One for all pairs, one per --pair in order, any number for a single --pair "
                   "(each makes its own fakes), or K:MODEL for a model of pair K (repeat for several per pair).")
@click.option("-o", "--output", "root", required=True, type=click.Path(file_okay=False),
              help="Dataset root to write (real/, fake/, metadata.json, dataset.csv).")
@click.option("--crf", type=int, default=18, show_default=True, help="x264 quality of the fakes.")
@shard_option
@device_option
@click.pass_context
def make_dataset(ctx: click.Context, pairs: tuple[tuple[str, str], ...], models: tuple[str, ...], root: str,
                 crf: int, shard: Shard | None, device: str | None) -> None:
    """Make a labelled real/fake dataset from pairs of identities: swaps, reenactments, synthesised faces.

    \b
    Examples:
      dfk make-dataset --pair data/alice data/bob --pair data/carol data/dave -m models/ab -m models/cd -o data/detect_set
      dfk train-detect --dataset data/detect_set -o detectors/mine
      dfk make-dataset --pair data/alice data/bob -m models/ab_fast -m models/ab_gan -o data/two_generators
      dfk make-dataset --pair a1 b1 --pair a2 b2 -m 1:models/p1 -m 1:models/p1_gan -m 2:models/p2 -o data/set
      dfk make-dataset --pair data/alice data/bob -m models/ab -m warp -m models/faces_gan -o data/families

    \b
    Fakes by family: a swap model converts A's videos to B's face and B's to A's; a reenactment
    model (or warp) animates a still of B with each A video and a still of A with each B video; a
    face GAN adds one latent-walk clip of faces of nobody per real video. Each fake is listed with
    its model (the folder name, or warp), kind and family (swap, reenact, synth) in metadata.json
    and dataset.csv; train-detect and detect --dataset report metrics per method and per family.

    \b
    Source groups keep people apart in train-detect's splits: a pair's real videos of A and B and
    all its fakes are one group (p1, p2, ...), and pairs that share a folder or video are merged.
    train-detect needs at least two groups, i.e. pairs of different people.

    \b
    With --shard K/N only every N-th (pair, video) is made -- pairs in order, A videos then B,
    each folder sorted -- and listed in metadata.shard-K-of-N.json and dataset.shard-K-of-N.csv;
    the run that finds the whole set done writes metadata.json and dataset.csv for all of it.
    Videos already in ROOT are skipped.
    """
    options = ConvertOptions(crf=crf, device=resolve_device_name(ctx, device))
    summary = run_make_dataset(list(pairs), list(models), root, options, progress=settings(ctx).show_progress,
                               shard=shard)
    click.echo(summary.line())
