"""Feature statistics of faces and the Fréchet distance between two sets (FID-style), for judging
a face GAN's samples against held-out real faces."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BATCH = 32


@torch.no_grad()
def pooled_features(extractor: nn.Module, faces: np.ndarray | torch.Tensor, batch: int = BATCH) -> np.ndarray:
    """``extractor``'s features (float64, ``N x D``) of RGB uint8 faces ``N x 3 x S x S``."""
    images = torch.as_tensor(faces)
    device = next(extractor.parameters()).device
    parts = [extractor(images[i:i + batch].to(device).float() / 255.0).double().cpu()
             for i in range(0, len(images), batch)]
    return torch.cat(parts).numpy()


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (``N x D``):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, the trace of the root computed from
    the symmetric ``S_a^(1/2) S_b S_a^(1/2)`` (stable for singular covariances, N < D)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def mean_pairwise_distance(features: np.ndarray) -> float:
    """The mean Euclidean distance between the features of two different images of a set: how
    varied the set is (a collapsed GAN's samples sit close together)."""
    count = len(features)
    squared = (features ** 2).sum(axis=1)
    distances = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2.0 * features @ features.T, 0.0, None))
    return float((distances.sum() - np.trace(distances)) / (count * (count - 1)))
