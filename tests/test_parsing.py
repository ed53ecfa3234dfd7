"""Face parsing (BiSeNet, CelebAMask-HQ classes) and `dfk convert --mask occlusion`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_cli.errors import BackendError, CheckpointError
from deepfake_cli.faces.align import invert_matrix, transform_points
from deepfake_cli.faces.masks import MaskShape, blend_mask
from deepfake_cli.faces.parsing import CLASSES, FACE_CLASSES, BiSeNet, FaceParser, load_face_parser
from deepfake_cli.faces.template import MEAN_FACE_68
from deepfake_cli.convert import ConvertOptions
from deepfake_cli.convert.frames import FrameJob, FrameSwapper

SQUARE = (slice(30, 40), slice(36, 46))  # rows, columns of the parser crop labelled "not face"


@pytest.fixture(scope="module")
def stand_in_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state dict of a randomly initialised parser, saved like a real checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    torch.save(BiSeNet().state_dict(), path)
    return path


class RiggedParser(nn.Module):
    """Says "skin" everywhere except a square of background (a hand, say) in its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], len(CLASSES), *x.shape[2:])
        logits[:, CLASSES.index("skin")] = 1.0
        logits[:, CLASSES.index("background"), SQUARE[0], SQUARE[1]] = 2.0
        return logits


class InvertingModel:
    """A stand-in swap model without a learned mask: the 'swapped' face is the inverted crop."""

    size, coverage, kind = 64, 0.625, "original"

    def swap(self, faces: torch.Tensor, direction: str) -> tuple[torch.Tensor, None]:
        return 1.0 - faces, None


def test_stand_in_weights_load_and_give_19_class_logits(stand_in_weights: Path, tmp_path: Path) -> None:
    parser = load_face_parser(stand_in_weights, "cpu", size=64)
    saved = torch.load(stand_in_weights, weights_only=True)
    torch.testing.assert_close(parser.net.state_dict()["conv_out.conv_out.weight"], saved["conv_out.conv_out.weight"])
    logits = parser.logits(np.zeros((2, 64, 64, 3), dtype=np.uint8))
    assert logits.shape == (2, 19, 64, 64) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert parser.face_regions(np.zeros((3, 48, 48, 3), dtype=np.uint8)).shape == (3, 64, 64)
    # the layouts checkpoints come in: wrapped, DataParallel prefixes, no BatchNorm counters
    wrapped = {"state_dict": {f"module.{k}": v for k, v in saved.items() if not k.endswith("num_batches_tracked")}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    load_face_parser(tmp_path / "wrapped.pth", "cpu", size=64)


def test_wrong_or_missing_weights_are_clear_errors(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not a BiSeNet face-parsing state dict .*missing cp.resnet.conv1"):
        load_face_parser(tmp_path / "resnet.pth")
    torch.save(BiSeNet(classes=11).state_dict(), tmp_path / "eleven.pth")
    with pytest.raises(CheckpointError, match="wrong shape conv_out.conv_out.weight"):
        load_face_parser(tmp_path / "eleven.pth")
    with pytest.raises(BackendError, match="face-parsing weights not found"):
        load_face_parser(tmp_path / "nowhere.pth")
    with pytest.raises(BackendError, match="--mask occlusion needs face-parsing weights: pass --parser-weights FILE"):
        load_face_parser(None)
    with pytest.raises(BackendError, match="needs face-parsing weights"):
        ConvertOptions(mask="occlusion").check()


def test_rigged_parser_cuts_its_square_out_of_the_mask() -> None:
    parser = FaceParser(RiggedParser(), "cpu", size=64)
    regions = parser.face_regions(np.zeros((2, 64, 64, 3), dtype=np.uint8))
    expected = np.full((64, 64), 255, dtype=np.uint8)
    expected[SQUARE] = 0
    np.testing.assert_array_equal(regions, np.stack([expected, expected]))
    assert set(FACE_CLASSES) & {"eye_g", "hair", "hat", "background"} == set()  # glasses are kept, not swapped

    points = (MEAN_FACE_68 - 0.5) * 120 + 100.0
    hull = blend_mask("hull", points, (200, 200), mask_shape=MaskShape(erode=0, blur=0))
    whole = blend_mask("occlusion", points, (200, 200), mask_shape=MaskShape(erode=0, blur=0),
                       face_region=np.ones((200, 200), np.uint8))
    np.testing.assert_array_equal(hull, whole)
    region = np.ones((200, 200), np.uint8)
    region[90:130, 80:120] = 0
    cut = blend_mask("occlusion", points, (200, 200), mask_shape=MaskShape(erode=0, blur=0), face_region=region)
    assert hull[90:130, 80:120].min() == 1.0 and cut[90:130, 80:120].max() == 0.0
    np.testing.assert_array_equal(cut[region > 0], hull[region > 0])
    with pytest.raises(ValueError, match="needs a face region"):
        blend_mask("occlusion", points, (200, 200))


def test_occlusion_mask_leaves_the_covered_part_of_the_frame_alone(rng: np.random.Generator) -> None:
    frame = rng.integers(40, 200, size=(160, 200, 3)).astype(np.uint8)
    landmarks = (MEAN_FACE_68 - 0.5) * 60 + np.array([100.0, 80.0])
    parser = FaceParser(RiggedParser(), "cpu", size=64)
    outputs = {}
    for kind in ("hull", "occlusion"):
        settings = ConvertOptions(mask=kind, color="none").blend_settings("original")
        swapper = FrameSwapper(InvertingModel(), "a2b", settings, torch.device("cpu"),
                               parser if kind == "occlusion" else None)
        swapper.start_source(lambda source, index, image: [landmarks], fps=25.0, smooth=0.0)
        job = FrameJob(Path("x.png"), 0, frame)
        swapper.find_faces([job])
        matrix = job.faces[0].parse_matrix
        swapper.run_model([job])
        swapper.compose([job])
        outputs[kind] = job.output
    # the square's centre, from parser-crop pixels to frame pixels
    centre = np.array([[(SQUARE[1].start + SQUARE[1].stop) / 2, (SQUARE[0].start + SQUARE[0].stop) / 2]])
    x, y = np.round(transform_points(centre, invert_matrix(matrix))[0]).astype(int)
    assert np.any(outputs["hull"][y, x] != frame[y, x])  # the hull swaps there ...
    np.testing.assert_array_equal(outputs["occlusion"][y - 3:y + 4, x - 3:x + 4], frame[y - 3:y + 4, x - 3:x + 4])
    cheek = landmarks[[2, 31]].mean(axis=0).round().astype(int)  # ... both swap the uncovered cheek
    assert np.any(outputs["occlusion"][cheek[1], cheek[0]] != frame[cheek[1], cheek[0]])
    np.testing.assert_array_equal(outputs["occlusion"][cheek[1], cheek[0]], outputs["hull"][cheek[1], cheek[0]])


def test_cli_occlusion_needs_weights_and_runs_with_them(run_dfk, tmp_path: Path, tiny_swap_model: Path,
                                                        stand_in_weights: Path) -> None:
    from deepfake_cli.media.synthetic import make_clip, write_clip
    from deepfake_cli.media.video import VideoReader

    clip = write_clip(tmp_path / "short.mp4", make_clip("astronaut", 6, (320, 240), seed=3).frames)
    out = tmp_path / "out.mp4"
    result = run_dfk("convert", clip, "-m", tiny_swap_model, "-o", out, "--mask", "occlusion")
    assert result.code != 0 and result.err.strip().splitlines() == [
        "error: --mask occlusion needs face-parsing weights: pass --parser-weights FILE "
        "(a BiSeNet CelebAMask-HQ state dict, 79999_iter.pth)"], result
    assert not out.exists()
    result = run_dfk("-q", "convert", clip, "-m", tiny_swap_model, "-o", out, "--mask", "occlusion",
                     "--parser-weights", stand_in_weights, "--device", "cpu")
    assert result.code == 0, result
    assert "6 frames (6 with a swapped face)" in result.out
    assert VideoReader(out).info.frame_count == 6
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(3)}, bad)
    result = run_dfk("convert", clip, "-m", tiny_swap_model, "-o", tmp_path / "bad.mp4", "--mask", "occlusion",
                     "--parser-weights", bad, "--device", "cpu")
    lines = result.err.strip().splitlines()
    assert result.code != 0 and len(lines) == 1 and "not a BiSeNet face-parsing state dict" in lines[0], result
