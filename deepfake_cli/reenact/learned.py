"""The learned animator: a ``train-reenact`` model driving one photo (``dfk reenact -m MODEL_DIR``).

The photo's face is cut out with its own alignment; every driving frame is cut out with the
alignment of the driving video's *first* face, so the head's motion stays in the crops. The
model's keypoints of each driving crop, relative to those of the first crop, move the photo's
keypoints (first-order-motion's relative motion); the generator renders the photo's crop with them.

The model works at a few dozen pixels; the photo's face is usually larger. So the output crop,
at the photo face's own resolution, is the model's image upscaled plus the photo's *detail*
(the photo minus the model's rendering of it unmoved) carried along the model's flow. With zero
relative motion the flow is the identity and the photo comes back unchanged. The crop is pasted
into the photo with a feathered mask covering the face where it was and where it moved to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_cli.errors import CheckpointError
from deepfake_cli.faces.align import alignment_matrix, transform_points, unwarp_face, warp_face
from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.faces.blend import feather_blend
from deepfake_cli.faces.masks import soft_hull_mask
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.reenact import store
from deepfake_cli.reenact.model import Keypoints, ReenactNet, relative_keypoints, warp
from deepfake_cli.reenact.schema import ReenactConfig

MAX_PASTE_PX = 512  # the output crop's size is the photo face's own, at most this
MASK_GROW = 0.5  # the paste mask: the landmarks' hull grown by this share of the inter-ocular distance
MASK_BLUR = 0.15  # and feathered by this share


def _tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255).to(device)


def _upscale(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)


class LearnedAnimator:
    """An ``Animator`` (see ``reenact.base``) running a trained ``ReenactNet``."""

    def __init__(self, net: ReenactNet, config: ReenactConfig, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.size, self.coverage, self.device = config.model.size, config.data.coverage, device

    @torch.no_grad()
    def start(self, photo: np.ndarray, photo_face: DetectedFace, first: np.ndarray, first_face: DetectedFace) -> None:
        """Cut out the photo's and the first driving frame's faces and find their keypoints."""
        size = self.size
        self.photo = photo
        self.first_matrix = alignment_matrix(first_face.landmarks, size, self.coverage)
        self.first_points = transform_points(first_face.landmarks, self.first_matrix)
        matrix = alignment_matrix(photo_face.landmarks, size, self.coverage)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop px per photo px
        self.paste = int(np.clip(round(size / max(scale, 1e-6)), size, MAX_PASTE_PX))
        self.paste_matrix = alignment_matrix(photo_face.landmarks, self.paste, self.coverage)
        self.photo_points = transform_points(photo_face.landmarks, self.paste_matrix)
        self.source = _tensor(warp_face(photo, matrix, size), self.device)
        self.kp_source: Keypoints = self.net.keypoints(self.source)
        self.kp_initial: Keypoints = self.net.keypoints(_tensor(warp_face(first, self.first_matrix, size), self.device))
        unmoved = self.net.animate(self.source, self.kp_source, self.kp_source)["prediction"]
        detailed = _tensor(warp_face(photo, self.paste_matrix, self.paste), self.device)
        self.detail = detailed - _upscale(unmoved, self.paste)

    @torch.no_grad()
    def frame(self, driving: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The photo with the motion of ``face`` (in ``driving``) relative to the first face."""
        crop = _tensor(warp_face(driving, self.first_matrix, self.size), self.device)
        kp_driving = relative_keypoints(self.kp_source, self.net.keypoints(crop), self.kp_initial)
        out = self.net.animate(self.source, self.kp_source, kp_driving)
        image = _upscale(out["prediction"], self.paste) + warp(self.detail, out["flow"])
        pixels = (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return self._paste(pixels, face)

    def _paste(self, crop: np.ndarray, face: DetectedFace) -> np.ndarray:
        """Blend the output crop into the photo where the face is and where it moved to."""
        motion = transform_points(face.landmarks, self.first_matrix) - self.first_points
        moved = self.photo_points + motion * (self.paste / self.size)
        iod = inter_ocular_distance(self.photo_points)
        shape = (self.paste, self.paste)
        mask = np.maximum(*(soft_hull_mask(points, shape, -MASK_GROW * iod, MASK_BLUR * iod)
                            for points in (self.photo_points, moved)))
        back, valid = unwarp_face(crop, self.paste_matrix, self.photo.shape)
        alpha, _ = unwarp_face(mask, self.paste_matrix, self.photo.shape)
        return feather_blend(self.photo, back, np.clip(alpha, 0, 1) * valid)


def load_animator(model_dir: Path, device: torch.device) -> LearnedAnimator:
    """The animator of a ``train-reenact`` model folder (``CheckpointError`` if it is none)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise CheckpointError("no such model folder", str(folder))
    config = store.read_config(folder)
    checkpoint = store.load(folder, training=False)
    net = store.build_net(config.model)
    try:
        net.load_state_dict(checkpoint.model["net"])
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the model of config.yaml: {str(exc).splitlines()[0]}",
                              str(folder)) from None
    return LearnedAnimator(net, config, device)
