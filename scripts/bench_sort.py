"""Benchmark `dfk sort`'s identity clustering on real photos of known people: prints one JSON line.

ORL faces (AT&T "Database of Faces": 40 people x 10 grey 92x112 photos, ``sNN/K.pgm``, fetched by
``scripts/fetch_footage.py``): each photo is upscaled 2x (bicubic) to a PNG, ``dfk extract`` runs
on them (the API, offline backend), then ``dfk sort``; clusters are scored against the folders
(one folder = one person).

With ``--videos`` the faces of several real videos (one person each; ``--every-n`` frames) are
extracted into one folder and sorted together instead; each video is one identity.

Fields: faces (sorted), sources, clusters (found) and identities (true), purity (share of faces
whose cluster's majority identity is theirs), completeness (share of faces in their identity's
largest cluster), pairwise_precision / pairwise_recall (same-cluster pairs that are the same
person / same-person pairs put in one cluster), misaligned (faces left out of clustering),
extract_s and sort_s (wall seconds), threshold, cpu.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout's deepfake_cli, not another installed copy
FOOTAGE = ROOT / "data" / "footage"
VIDEOS = ["pyfeat/WolfgangLanger_Pexels.mp4", "pyfeat/single_face.mp4", "carphone/carphone_pristine.mp4"]


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def upscale_orl(orl: Path, target: Path, people: int | None) -> dict[str, str]:
    """2x bicubic PNG copies of the ORL photos in ``target``; file stem -> person."""
    folders = sorted((p for p in orl.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))[:people]
    identity = {}
    target.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for photo in sorted(folder.glob("*.pgm"), key=lambda p: int(p.stem)):
            grey = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
            big = cv2.resize(grey, (grey.shape[1] * 2, grey.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
            stem = f"{folder.name}_{photo.stem}"
            cv2.imwrite(str(target / f"{stem}.png"), big)
            identity[stem] = folder.name
    return identity


def scores(truth: list[str], labels: list[int]) -> dict[str, float]:
    """Purity, completeness and pairwise precision / recall of ``labels`` (-1: unclustered, left out)."""
    pairs = [(t, k) for t, k in zip(truth, labels, strict=True) if k >= 0]
    total = len(pairs)
    by_cluster: dict[int, Counter] = {}
    by_person: dict[str, Counter] = {}
    for person, cluster in pairs:
        by_cluster.setdefault(cluster, Counter())[person] += 1
        by_person.setdefault(person, Counter())[cluster] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / total
    completeness = sum(c.most_common(1)[0][1] for c in by_person.values()) / total
    both = sum(n * (n - 1) / 2 for c in by_cluster.values() for n in c.values())
    same_cluster = sum(sum(c.values()) * (sum(c.values()) - 1) / 2 for c in by_cluster.values())
    same_person = sum(sum(c.values()) * (sum(c.values()) - 1) / 2 for c in by_person.values())
    return {"purity": round(purity, 4), "completeness": round(completeness, 4),
            "pairwise_precision": round(both / same_cluster, 4) if same_cluster else 1.0,
            "pairwise_recall": round(both / same_person, 4) if same_person else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=FOOTAGE,
                        help="scripts/fetch_footage.py's folder (orl/sNN/K.pgm and the videos)")
    parser.add_argument("--people", type=int, default=None, help="only the first N ORL people")
    parser.add_argument("--videos", action="store_true", help="sort the faces of the real videos instead of ORL")
    parser.add_argument("--every-n", type=int, default=10, help="with --videos: every n-th frame")
    parser.add_argument("--threshold", type=float, default=None, help="sort's --same-person (default: sort's)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the upscaled photos and extracted faces here (reused when present)")
    args = parser.parse_args()

    from deepfake_cli.extract import ExtractOptions, extract
    from deepfake_cli.media.alignments import load_alignments
    from deepfake_cli.sort import SortOptions, sort_faces

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        faces = work / ("faces_videos" if args.videos else "faces_orl")
        if args.videos:
            inputs: list[Path] = [args.footage / v for v in VIDEOS]
            options = ExtractOptions(size=256, every_n=args.every_n)
        else:
            photos = work / "orl_png"
            identity = upscale_orl(args.footage / "orl", photos, args.people)
            inputs = [photos / f"{stem}.png" for stem in identity]
            options = ExtractOptions(size=256)
        started = time.perf_counter()
        extract(inputs, faces, options, progress=False)
        extract_s = time.perf_counter() - started
        started = time.perf_counter()
        sort_options = SortOptions() if args.threshold is None else SortOptions(same_person=args.threshold)
        summary = sort_faces(faces, sort_options, progress=False)
        sort_s = time.perf_counter() - started
        records = {r.file: r for r in load_alignments(faces).faces}

        def person(file: str) -> str:
            source = Path(records[file].source)
            return source.name if args.videos else identity[source.stem]

        truth = [person(f.record.file) for f in summary.faces]
        labels = [f.cluster for f in summary.faces]
    figures = {
        "data": "videos" if args.videos else "orl",
        "faces": len(truth),
        "sources": len(inputs),
        "identities": len(set(truth)),
        "clusters": len(summary.clusters),
        **scores(truth, labels),
        "misaligned": sum(k < 0 for k in labels),
        "largest_clusters": summary.clusters[:8],
        "threshold": sort_options.same_person,
        "extract_s": round(extract_s, 1),
        "sort_s": round(sort_s, 1),
        "cpu": cpu_model(),
    }
    if args.videos:
        figures["every_n"] = args.every_n
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
