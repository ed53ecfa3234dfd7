"""How hard each loss term pulls: the gradient norm at the decoder output of a trained swap model.

    python scripts/bench_loss_terms.py MODEL_DIR FACES_A FACES_B

For augmented training batches of both identities (``--batch`` faces each, the model's own
augmentation, seeded), the weighted reconstruction terms of the model's config (L1, DSSIM, edge)
and the *unweighted* perceptual term of each offline network are evaluated on the model's output,
and the norm of each one's gradient with respect to that output is averaged over the two sides. One
JSON line, with the perceptual weight at which each network's term would pull as hard as L1 and as
hard as DSSIM: what a ``loss.perceptual`` weight means in this model's loss.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_swap_quality import cpu_name  # noqa: E402
from deepfake_cli.swap.augment import Augmenter  # noqa: E402
from deepfake_cli.swap.data import load_faces  # noqa: E402
from deepfake_cli.swap.loader import load_swap_model  # noqa: E402
from deepfake_cli.swap.losses import NETWORKS, dssim_loss, edge_loss, load_perceptual, weighted_l1  # noqa: E402
from deepfake_cli.swap.models import SIDES  # noqa: E402
from deepfake_cli.swap.store import ModelStore  # noqa: E402

OFFLINE = [name for name, entry in NETWORKS.items() if entry.wheel is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("faces_a", type=Path)
    parser.add_argument("faces_b", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = ModelStore(args.model).read_config()
    model = load_swap_model(args.model, device="cpu")
    net = model.net.float()
    generator = torch.Generator().manual_seed(args.seed)
    augment = Augmenter(config.augment, generator)
    perceptual = {name: load_perceptual(name, "imagenet", [], torch.device("cpu")) for name in OFFLINE}
    loss = config.loss
    pulls: dict[str, list[tuple[float, float]]] = {}
    for side, folder in zip(SIDES, (args.faces_a, args.faces_b), strict=True):
        images, weights, _ = load_faces(folder, config.model.size, config.data.crop).sample(args.batch, generator)
        batch = augment(images, weights)
        with torch.no_grad():
            rgb, _ = net(batch.warped, side)
        terms: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "recon": lambda out: loss.recon * weighted_l1(out, batch.target, batch.weight),
            "ssim": lambda out: loss.ssim * dssim_loss(out, batch.target, batch.weight, loss.ssim_scales),
            "edge": lambda out: loss.edge * edge_loss(out, batch.target),
            **{f"perceptual_{name}": (lambda out, term=term: term(out, batch.target))
               for name, term in perceptual.items()},
        }
        for name, term in terms.items():
            out = rgb.detach().clone().requires_grad_()
            value = term(out)
            value.backward()
            pulls.setdefault(name, []).append((float(value.detach()), float(out.grad.norm())))
    figures = {name: {"value": round(sum(v for v, _ in pair) / len(pair), 4),
                      "grad_norm": round(sum(g for _, g in pair) / len(pair), 5)} for name, pair in pulls.items()}
    matching = {name: {"as_l1": round(figures["recon"]["grad_norm"] / figures[f"perceptual_{name}"]["grad_norm"], 3),
                       "as_ssim": round(figures["ssim"]["grad_norm"] / figures[f"perceptual_{name}"]["grad_norm"], 3)}
                for name in OFFLINE}
    print(json.dumps({"bench": "loss_terms", "model": str(args.model), "step": model.step,
                      "weights": {"recon": loss.recon, "ssim": loss.ssim, "edge": loss.edge}, "terms": figures,
                      "perceptual_weight_matching": matching, "cpu": cpu_name(), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
