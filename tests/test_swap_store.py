"""Training faces at scale: the compact store (uint8 region codes) and the streaming loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepfake_cli.faces.masks import erode_mask, hull_mask
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.swap import data
from deepfake_cli.swap.data import FaceSet, load_faces


def _old_region_weights(landmarks: np.ndarray, size: int, eye: float, mouth: float, background: float) -> np.ndarray:
    """The float32 weight map exactly as the store before the compact one drew it (kept here verbatim,
    so the comparison is with the old code, not with the new code's own decoding)."""
    regions, grow = (data.REGIONS_68, data.GROW_68) if len(landmarks) == 68 else (data.REGIONS_5, data.GROW_5)
    iod = inter_ocular_distance(landmarks)
    pixels = -grow * iod
    weights = np.ones((size, size), dtype=np.float32)
    if background != 1.0 and len(landmarks) == 68:
        face = erode_mask(hull_mask(landmarks, weights.shape), -data.FACE_GROW * iod) > 0
        weights[~face] = background
    for name, value in (("mouth", mouth), ("eye", eye)):
        for part in regions[name]:
            area = erode_mask(hull_mask(landmarks[part], weights.shape), pixels) > 0
            weights[area] = value
    return weights


def _float_path(folder: Path, size: int, eye: float, mouth: float, background: float) -> FaceSet:
    """The faces as the old store kept them: float32 weight maps and uint8 hulls beside the images."""
    faces = load_faces(folder, size, eye=eye, mouth=mouth, background=background)
    records = {r.file: r for r in faces.alignments.faces}
    weights, hulls = [], []
    for name in faces.files:
        _, to_model, width = data._prepare(folder / name, size, 1.0)
        points = data._landmarks_in_model(records[name], to_model, width)
        weights.append(_old_region_weights(points, size, eye, mouth, background))
        hulls.append(hull_mask(points, (size, size)).astype(np.uint8))
    return FaceSet(folder, faces.images, torch.from_numpy(np.stack(weights))[:, None], faces.files, faces.alignments,
                   torch.from_numpy(np.stack(hulls))[:, None])


def test_the_compact_store_gives_the_batches_of_float_weight_maps(faces_a: Path) -> None:
    """Same images, weights and hulls, batch for batch (tolerance: exact, the palette holds the very
    float32 weights; well within the 1/255 a uint8 quantisation would allow), at 1 + 3 bytes a pixel."""
    for eye, mouth, background in ((3.0, 2.0, 1.0), (2.5, 1.5, 0.3)):
        compact = load_faces(faces_a, 32, eye=eye, mouth=mouth, background=background)
        old = _float_path(faces_a, 32, eye, mouth, background)
        assert compact.hulls is None and compact.weights.dtype == torch.uint8 and compact.has_hulls
        assert compact.bytes_per_face() == 4 * 32 * 32 and old.bytes_per_face() == 8 * 32 * 32
        for step in range(3):
            new_batch = compact.sample(6, torch.Generator().manual_seed(step))
            old_batch = old.sample(6, torch.Generator().manual_seed(step))
            assert torch.equal(new_batch[0], old_batch[0])
            assert new_batch[1].dtype == torch.float32
            assert float((new_batch[1] - old_batch[1]).abs().max()) <= 1 / 255
            assert torch.equal(new_batch[1], old_batch[1]) and torch.equal(new_batch[2], old_batch[2])
        every = torch.arange(len(old))
        assert torch.equal(compact.gather(every)[1], old.weights) and torch.equal(compact.gather(every)[2], old.hulls)
        assert set(torch.unique(old.weights).tolist()) == set(np.float32([1.0, eye, mouth]).tolist()) | (
            set() if background == 1.0 else {float(np.float32(background))})


def test_streaming_gives_the_batches_of_the_in_memory_store(faces_a: Path) -> None:
    resident = load_faces(faces_a, 32)
    streamed = load_faces(faces_a, 32, stream=True)
    assert streamed.images.device.type == "cpu" and streamed.target_device == resident.target_device
    first, second = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(4):
        for a, b in zip(resident.sample(8, first), streamed.sample(8, second), strict=True):
            assert torch.equal(a, b)


def test_training_streamed_matches_training_in_memory(faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    """train.stream changes where faces wait, not the training: the same losses, step for step."""
    from deepfake_cli.swap import swap_config, train_swap

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = []
        for stream in (False, True):
            folder = tmp_path / f"stream_{stream}"
            config = swap_config(folder, "tiny", overrides=["train.iterations=4", "train.save_every=4",
                                                            "train.preview_every=4", f"train.stream={stream}"])
            losses.append(train_swap(faces_a, faces_b, folder, config, device="cpu", seed=0, progress=False).losses)
    finally:
        torch.set_num_threads(threads)
    assert losses[0] == losses[1]
