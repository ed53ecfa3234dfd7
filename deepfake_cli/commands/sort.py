"""``dfk sort``: keep the main person's sharp, well-aligned, distinct faces of an extract folder."""

from __future__ import annotations

import click

from deepfake_cli.commands import settings
from deepfake_cli.sort import SAME_PERSON_MEAN, SortOptions, sort_faces


@click.command("sort")
@click.argument("faces_dir", metavar="FACES_DIR", type=click.Path(path_type=str))
@click.option("--apply", is_flag=True,
              help="Move rejected faces into FACES_DIR/rejected/<reason>/ and rewrite alignments.json without them.")
@click.option("--person", type=int, default=0, show_default=True,
              help="Identity cluster to keep; 0 is the largest (the main person).")
@click.option("--same-person", type=float, default=SAME_PERSON_MEAN, show_default=True,
              help="Two groups of faces are one person while their mean pairwise descriptor distance is below "
                   "this (average-linkage clustering; raise it if one person splits into several clusters).")
@click.option("--min-blur", type=float, default=0.3, show_default=True,
              help="Faces sharper than this share of their cluster's median sharpness are kept (0: off).")
@click.option("--max-fit", type=float, default=0.1, show_default=True,
              help="Largest landmark residual to the mean-face template, in face widths (frontal: 0.02-0.04).")
@click.option("--dup-distance", type=float, default=0.05, show_default=True,
              help="Near-duplicate: descriptor distance to an earlier kept face below this ...")
@click.option("--dup-pixels", type=float, default=2.0, show_default=True,
              help="... and mean grey difference (0-255) of 32 px thumbnails below this (0: off).")
@click.pass_context
def sort(ctx: click.Context, faces_dir: str, apply: bool, person: int, same_person: float, min_blur: float,
         max_fit: float, dup_distance: float, dup_pixels: float) -> None:
    """Sort an extract folder's faces by identity, blur, alignment fit and near-duplicates.

    Writes FACES_DIR/sort.json (per face: cluster, blur, fit, duplicate_of, verdict) and a contact
    sheet per identity cluster (FACES_DIR/sort_cluster_<k>.png; misaligned faces, which join no
    cluster, in sort_cluster_misaligned.png); faces whose PNG was deleted by hand are dropped from
    alignments.json.

    \b
    Examples:
      dfk extract data/crowd.mp4 -o data/faces --all-faces
      dfk sort data/faces            # look at sort.json and the contact sheets
      dfk sort data/faces --apply    # move rejects to data/faces/rejected/
    """
    options = SortOptions(same_person=same_person, person=person, min_blur=min_blur, max_fit=max_fit,
                          dup_distance=dup_distance, dup_pixels=dup_pixels, apply=apply)
    summary = sort_faces(faces_dir, options, progress=settings(ctx).show_progress)
    for line in summary.lines():
        click.echo(line)
