"""`--reference`: in a frame with several people, extract and convert take only the reference person.

Frames (640x360) hold two public-domain people pasted side by side (the astronaut is the reference,
Grace Hopper the other person) with some motion, or Grace Hopper, larger, crossing in front of the
astronaut.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.faces import create_backend
from deepfake_cli.faces.identity import IdentityMatcher, face_descriptor, landmarks_face
from deepfake_cli.media.alignments import load_alignments
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import STILLS, load_still, make_clip, write_clip
from deepfake_cli.media.video import VideoReader
from deepfake_cli.faces.follow import DetectingLocator

SIZE = (640, 360)
REFERENCE, OTHER = "astronaut", "grace_hopper"


@dataclass
class Pasted:
    """One person pasted into a frame: the square patch ``side`` px wide centred on ``(x, y)``."""

    name: str
    side: int
    x: float
    y: float

    @property
    def face_half(self) -> float:
        """Half the width of the face in the patch (the patch is 2.2 face sizes wide)."""
        return self.side / 2.2 / 2

    def face_box(self, grow: float = 1.0) -> tuple[int, int, int, int]:
        """``x0, y0, x1, y1`` of the face, ``grow`` times its size, in frame pixels (clipped)."""
        half = self.face_half * grow
        return (max(int(self.x - half), 0), max(int(self.y - half), 0),
                min(int(self.x + half), SIZE[0]), min(int(self.y + half), SIZE[1]))


def _patch(name: str, side: int) -> np.ndarray:
    still = STILLS[name]
    scale = side / (2.2 * still.face_size)
    cx, cy = still.center
    matrix = np.float32([[scale, 0, side / 2 - cx * scale], [0, scale, side / 2 - cy * scale]])
    return cv2.warpAffine(load_still(name), matrix, (side, side), borderMode=cv2.BORDER_REFLECT)


def _scene(people: list[Pasted]) -> np.ndarray:
    """A grey frame with ``people`` pasted in order (later ones in front)."""
    frame = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
    for person in people:
        patch = _patch(person.name, person.side)
        x0, y0 = int(person.x - person.side / 2), int(person.y - person.side / 2)
        xs, ys = max(x0, 0), max(y0, 0)
        xe, ye = min(x0 + person.side, SIZE[0]), min(y0 + person.side, SIZE[1])
        frame[ys:ye, xs:xe] = patch[ys - y0:ye - y0, xs - x0:xe - x0]
    return frame


@dataclass
class Scene:
    frames: list[np.ndarray]
    people: list[list[Pasted]]  # per frame; [0] is the reference person


def _side_by_side(n: int = 8) -> Scene:
    people = [[Pasted(REFERENCE, 120, 180 + 4 * t, 180 - t), Pasted(OTHER, 130, 460 - 4 * t, 180 + t)]
              for t in range(n)]
    return Scene([_scene(p) for p in people], people)


def _crossing(n: int = 14) -> Scene:
    """The other person, larger and in front, moves from the right across the reference to its left."""
    people = [[Pasted(REFERENCE, 110, 240 + 2 * t, 180), Pasted(OTHER, 160, 560 - 30 * t, 190)] for t in range(n)]
    return Scene([_scene(p) for p in people], people)


@pytest.fixture(scope="module")
def backend():
    return create_backend("offline", detector_threads=1)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two stills as reference images, and an image without a face."""
    folder = tmp_path_factory.mktemp("references")
    paths = {name: folder / f"{name}.png" for name in (REFERENCE, OTHER, "blank")}
    write_image(paths[REFERENCE], load_still(REFERENCE))
    write_image(paths[OTHER], load_still(OTHER))
    write_image(paths["blank"], np.full((200, 200, 3), 128, np.uint8))
    return paths


@pytest.fixture(scope="module")
def descriptors(backend, references: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: IdentityMatcher.from_reference(references[name], backend).reference for name in (REFERENCE, OTHER)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Scene, Path]]:
    folder = tmp_path_factory.mktemp("crowd")
    scenes = {"side_by_side": _side_by_side(), "crossing": _crossing()}
    return {name: (scene, write_clip(folder / f"{name}.mp4", scene.frames)) for name, scene in scenes.items()}


def _who(frame: np.ndarray, landmarks: np.ndarray, descriptors: dict[str, np.ndarray]) -> str:
    """Whose face the landmarks in ``frame`` are: the nearer of the two references."""
    descriptor = face_descriptor(frame, landmarks_face(landmarks))
    return min(descriptors, key=lambda name: float(np.linalg.norm(descriptor - descriptors[name])))


def _inside(points: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    x, y = points.mean(axis=0)
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_the_scenes_show_two_people_and_the_other_one_is_larger_when_crossing(backend, clips) -> None:
    scene = clips["crossing"][0]
    counts = [len(backend.detect(frame)) for frame in scene.frames]
    assert counts[0] == 2 and min(counts) <= 1  # both at first; the reference hidden for a while
    first = sorted(backend.detect(scene.frames[0]), key=lambda f: f.area)
    assert _inside(first[-1].landmarks, scene.people[0][1].face_box())  # the largest face is the other person
    assert [len(backend.detect(frame)) for frame in clips["side_by_side"][0].frames] == [2] * 8


@pytest.mark.parametrize("clip", ["side_by_side", "crossing"])
def test_extract_with_a_reference_takes_only_that_person_on_every_frame(run_dfk, clips, references, descriptors,
                                                                        tmp_path: Path, clip: str) -> None:
    scene, video = clips[clip]
    out = tmp_path / "faces"
    result = run_dfk("-q", "extract", video, "-o", out, "--size", "64", "--reference", references[REFERENCE])
    assert result.code == 0, result
    records = load_alignments(out).faces
    frames = sorted(r.frame for r in records)
    assert frames == sorted(set(frames))  # one face per frame at most
    if clip == "side_by_side":
        assert frames == list(range(8))
        assert "8 faces of other people left out" in result.out
    else:
        visible = [t for t, people in enumerate(scene.people)
                   if abs(people[1].x - people[0].x) > people[1].side / 2 + people[0].face_half * 1.2]
        assert set(visible) <= set(frames)
    for record in records:
        assert _inside(record.landmarks, scene.people[record.frame][0].face_box(grow=1.3))
        assert _who(scene.frames[record.frame], record.landmarks, descriptors) == REFERENCE


def test_without_a_reference_extract_takes_the_larger_other_person(run_dfk, clips, tmp_path: Path) -> None:
    scene, video = clips["crossing"]
    out = tmp_path / "faces"
    assert run_dfk("-q", "extract", video, "-o", out, "--size", "64").code == 0
    first = next(r for r in load_alignments(out).faces if r.frame == 0)
    assert _inside(first.landmarks, scene.people[0][1].face_box())


def test_all_faces_with_a_reference_keeps_every_copy_of_that_person(run_dfk, references, descriptors,
                                                                    tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    people = [Pasted(REFERENCE, 120, 110, 180), Pasted(OTHER, 130, 320, 180), Pasted(REFERENCE, 140, 530, 190)]
    frame = _scene(people)
    write_image(folder / "three.png", frame)
    out = tmp_path / "faces"
    result = run_dfk("-q", "extract", folder, "-o", out, "--size", "64", "--all-faces",
                     "--reference", references[REFERENCE])
    assert result.code == 0, result
    records = load_alignments(out).faces
    assert len(records) == 2
    for record, person in zip(sorted(records, key=lambda r: r.landmarks[:, 0].mean()), (people[0], people[2]),
                              strict=True):
        assert _inside(record.landmarks, person.face_box())
        assert _who(frame, record.landmarks, descriptors) == REFERENCE
    # without --all-faces only the nearest of the two copies
    single = tmp_path / "single"
    result = run_dfk("-q", "extract", folder, "-o", single, "--size", "64", "--reference", references[REFERENCE])
    assert result.code == 0 and len(load_alignments(single).faces) == 1


def test_an_extract_folder_works_as_the_reference(backend, faces_a: Path, descriptors) -> None:
    matcher = IdentityMatcher.from_reference(faces_a, backend)
    assert matcher.faces >= 20
    assert np.linalg.norm(matcher.reference - descriptors[REFERENCE]) < 0.4
    assert np.linalg.norm(matcher.reference - descriptors[OTHER]) > 0.6


def test_a_reference_without_a_face_is_one_error_line(run_dfk, clips, references, tiny_swap_model: Path,
                                                      tmp_path: Path) -> None:
    video = clips["side_by_side"][1]
    for args in (["extract", video, "-o", tmp_path / "faces"],
                 ["convert", video, "-m", tiny_swap_model, "-o", tmp_path / "out.mp4"]):
        result = run_dfk("-q", *args, "--reference", references["blank"])
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert result.code != 0 and len(lines) == 1, result
        assert lines[0].startswith("error: no face found in the --reference") and "blank.png" in lines[0]
    assert not (tmp_path / "faces").exists() and not (tmp_path / "out.mp4").exists()
    result = run_dfk("-q", "extract", video, "-o", tmp_path / "faces", "--reference", tmp_path / "missing.png")
    assert result.code != 0 and "error: reference not found" in result.err


def test_the_followed_face_never_hops_to_the_other_person(backend, clips, references) -> None:
    scene = clips["crossing"][0]
    matcher = IdentityMatcher.from_reference(references[REFERENCE], backend)
    locator = DetectingLocator(backend, redetect=10, matcher=matcher)
    plain = DetectingLocator(backend, redetect=10)
    found = [locator(Path("crossing.mp4"), t, frame) for t, frame in enumerate(scene.frames)]
    assert all(len(faces) <= 1 for faces in found)
    for t, faces in enumerate(found):
        for landmarks in faces:
            assert _inside(landmarks, scene.people[t][0].face_box(grow=1.3)), t
    assert [len(faces) for faces in found[:7]] == [1] * 7  # the reference is in full view
    # without the reference, the larger other person is the one followed
    assert _inside(plain(Path("crossing.mp4"), 0, scene.frames[0])[0], scene.people[0][1].face_box())


def test_a_cut_to_another_person_in_the_same_place_is_not_followed(backend, references, monkeypatch) -> None:
    people = ([Pasted(REFERENCE, 110, 300 + 3 * t, 180) for t in range(3)]
              + [Pasted(OTHER, 110, 319 + 3 * t, 180) for t in range(3)])  # a face box of about the same size
    frames = [_scene([person]) for person in people]
    matcher = IdentityMatcher.from_reference(references[REFERENCE], backend)

    def run() -> list[int]:
        locator = DetectingLocator(backend, redetect=10, matcher=matcher)
        return [len(locator(Path("cut.mp4"), t, frame)) for t, frame in enumerate(frames)]

    assert run() == [1, 1, 1, 0, 0, 0]
    # the window search alone would follow the other person: only the checks stop it
    monkeypatch.setattr(DetectingLocator, "_doubtful", lambda *args: False)
    assert run() == [1] * 6


def test_a_lone_reference_person_costs_a_descriptor_per_full_search_and_few_checks(backend, references) -> None:
    """A lone person moving and relit: a descriptor per full search, and a check only where the
    aligned look moves away from the last verified one (measured: 2 checks in 20 frames)."""
    frames = make_clip(REFERENCE, 20, (320, 240), seed=3).frames
    matcher = IdentityMatcher.from_reference(references[REFERENCE], backend)
    before = matcher.computed
    locator = DetectingLocator(backend, redetect=10, matcher=matcher)
    assert all(len(locator(Path("alone.mp4"), t, frame)) == 1 for t, frame in enumerate(frames))
    assert locator.full_searches == 2 and 2 <= matcher.computed - before <= 5


def _decoded(video: Path) -> np.ndarray:
    return np.stack(list(VideoReader(video)))


@pytest.mark.parametrize("clip", ["side_by_side", "crossing"])
def test_convert_with_a_reference_swaps_only_that_person(run_dfk, clips, references, tiny_swap_model: Path,
                                                         tmp_path: Path, clip: str) -> None:
    scene, video = clips[clip]
    out = tmp_path / "out.mp4"
    result = run_dfk("-q", "convert", video, "-m", tiny_swap_model, "-o", out, "--crf", "12",
                     "--reference", references[REFERENCE])
    assert result.code == 0, result
    _assert_only_the_reference_is_swapped(scene, video, out)


def test_convert_with_alignments_and_a_reference_swaps_only_that_person(run_dfk, clips, references,
                                                                        tiny_swap_model: Path, tmp_path: Path) -> None:
    scene, video = clips["side_by_side"]
    faces = tmp_path / "faces"
    assert run_dfk("-q", "extract", video, "-o", faces, "--size", "64", "--all-faces").code == 0
    assert len(load_alignments(faces).faces) == 16  # both people
    out = tmp_path / "out.mp4"
    result = run_dfk("-q", "convert", video, "-m", tiny_swap_model, "-o", out, "--crf", "12",
                     "--alignments", faces, "--reference", references[REFERENCE])
    assert result.code == 0, result
    _assert_only_the_reference_is_swapped(scene, video, out)


def _assert_only_the_reference_is_swapped(scene: Scene, video: Path, out: Path) -> None:
    source, converted = _decoded(video), _decoded(out)
    assert converted.shape == source.shape
    swapped = 0
    for t, (reference, other) in enumerate(scene.people):
        change = np.abs(converted[t].astype(np.int16) - source[t]).max(axis=2)
        # the other person's face, less whatever the reference's (grown) face shares with it
        x0, y0, x1, y1 = other.face_box()
        region = np.zeros(change.shape, bool)
        region[y0:y1, x0:x1] = True
        rx0, ry0, rx1, ry1 = reference.face_box(grow=1.6)
        region[ry0:ry1, rx0:rx1] = False
        if region.any():
            assert change[region].mean() < 3.0, (t, change[region].mean())
        fx0, fy0, fx1, fy1 = reference.face_box(grow=0.5)
        swapped += change[fy0:fy1, fx0:fx1].mean() > 8.0
    visible = sum(abs(o.x - r.x) > o.side / 2 + r.face_half * 1.2 for r, o in scene.people)
    assert swapped >= visible


def test_detect_faces_with_a_reference_are_only_that_persons_and_cached_apart(clips, references, descriptors,
                                                                              tmp_path: Path) -> None:
    from deepfake_cli.detect.config import FacesConfig
    from deepfake_cli.detect.tracks import FaceSource

    scene, video = clips["side_by_side"]
    plain = FaceSource(tmp_path / "cache", FacesConfig(size=64))
    source = FaceSource(tmp_path / "cache", FacesConfig(size=64), reference=str(references[REFERENCE]))
    assert plain.cache_folder(video) != source.cache_folder(video)
    assert plain.matcher() is None
    other = plain.tracks(video)[0]  # without a reference: the largest face, the other person's
    assert all(_inside(np.array(box).reshape(2, 2), scene.people[f][1].face_box(grow=1.3))
               for f, box in zip(other.frames, other.boxes, strict=True))
    (track,) = source.tracks(video)
    assert track.frames == list(range(8))
    for frame, box in zip(track.frames, track.boxes, strict=True):
        assert _inside(np.array(box).reshape(2, 2), scene.people[frame][0].face_box(grow=1.3))


def test_detect_cli_scores_the_reference_person(run_dfk, clips, references, tmp_path: Path) -> None:
    import json

    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for seed in (1, 2):
        write_clip(real / f"a{seed}.mp4", make_clip(REFERENCE, 10, (320, 240), seed=seed).frames)
        write_clip(fake / f"g{seed}.mp4", make_clip(OTHER, 10, (320, 240), seed=seed).frames)
    model = tmp_path / "detector"
    trained = run_dfk("-q", "train-detect", "--real", real, "--fake", fake, "-o", model, "--preset", "tiny",
                      "--set", "train.epochs=1", "--device", "cpu")
    assert trained.code == 0, trained
    video = clips["side_by_side"][1]
    result = run_dfk("-q", "detect", video, "-m", model, "--reference", references[REFERENCE])
    assert result.code == 0, result
    (scored,) = json.loads(result.out)["results"]
    assert scored["status"] == "ok" and scored["faces"] == 8
    assert len(list((model / "faces").iterdir())) == 4 + 1  # the training clips and the reference's crowd clip
    failed = run_dfk("-q", "detect", video, "-m", model, "--reference", references["blank"])
    lines = [line for line in failed.err.splitlines() if line.strip()]
    assert failed.code != 0 and len(lines) == 1 and lines[0].startswith("error: no face found in the --reference")


def _dissolve(alphas: list[float], x: float = 320) -> list[np.ndarray]:
    """Frames of the reference blended with the other person at the same place: ``alpha`` of the other."""
    reference = _scene([Pasted(REFERENCE, 120, x, 180)]).astype(np.float32)
    other = _scene([Pasted(OTHER, 120, x, 180)]).astype(np.float32)
    return [np.clip((1 - a) * reference + a * other + 0.5, 0, 255).astype(np.uint8) for a in alphas]


def _truth(backend, matcher: IdentityMatcher, frames: list[np.ndarray]) -> list[float]:
    """Each frame's (one) face's distance to the reference, from a whole-frame detection."""
    return [matcher.distance(frame, backend.detect(frame)[0]) for frame in frames]


def _followed_only_when_it_matches(found: list[int], truth: list[float], threshold: float) -> None:
    for t, (count, distance) in enumerate(zip(found, truth, strict=True)):
        if distance >= threshold + 0.02:  # a full check says someone else: never swapped
            assert count == 0, (t, distance, found)
        elif distance < threshold - 0.02:  # clearly the reference: followed
            assert count == 1, (t, distance, found)


def test_a_slow_dissolve_to_another_person_in_the_same_place_does_not_drift(backend, references) -> None:
    """30 frames cross-dissolving from the reference to the other person, in place: each frame looks
    almost like the last, so only a look kept from the last descriptor check (not refreshed every
    frame) and a check whenever the match was close notice the drift."""
    frames = _dissolve([t / 29 for t in range(30)])
    matcher = IdentityMatcher.from_reference(references[REFERENCE], backend)
    truth = _truth(backend, matcher, frames)
    assert truth[0] < 0.3 and truth[-1] > matcher.threshold + 0.05  # the scene does cross over
    crossing = next(t for t, d in enumerate(truth) if d >= matcher.threshold)
    assert 5 < crossing < 25
    for redetect in (10, 30):  # the default, and a full search only on the first frame
        locator = DetectingLocator(backend, redetect=redetect, matcher=matcher)
        found = [len(locator(Path("dissolve.mp4"), t, frame)) for t, frame in enumerate(frames)]
        _followed_only_when_it_matches(found, truth, matcher.threshold)
        assert found[:crossing - 3] == [1] * (crossing - 3)


@pytest.mark.parametrize("alpha", [0.3, 0.45, 0.6, 0.8])
def test_a_cut_to_a_look_alike_is_followed_only_if_it_matches(backend, references, alpha: float) -> None:
    """Look-alikes: blends of the two people (``alpha`` of the other) cut in after the reference, in the
    same place and moving on; followed exactly where a full descriptor check would take them."""
    frames = _dissolve([0.0] * 3) + [_dissolve([alpha], x=320 + 2 * t)[0] for t in range(7)]
    matcher = IdentityMatcher.from_reference(references[REFERENCE], backend)
    truth = _truth(backend, matcher, frames)
    locator = DetectingLocator(backend, redetect=10, matcher=matcher)
    found = [len(locator(Path("lookalike.mp4"), t, frame)) for t, frame in enumerate(frames)]
    _followed_only_when_it_matches(found, truth, matcher.threshold)
    assert found[:3] == [1, 1, 1]


def test_the_threshold_is_dlibs_pairwise_distance_passed_by_half_the_reference_faces() -> None:
    """--reference-distance is applied as documented: to the median of the pairwise distances to the
    reference's faces, not to the distance to their mean (which an average makes smaller for anybody)."""
    rng = np.random.default_rng(0)
    faces = rng.normal(0, 0.04, (9, 128))  # one person's faces around the origin (pairwise ~0.8 apart)
    matcher = IdentityMatcher(faces.mean(axis=0), 0.6, len(faces), faces)
    stranger = rng.normal(0, 0.04, 128)
    pairwise = np.linalg.norm(faces - stranger, axis=1)
    assert matcher.distance_of(stranger) == pytest.approx(float(np.median(pairwise)))
    assert np.linalg.norm(stranger - faces.mean(axis=0)) < 0.6 < matcher.distance_of(stranger)
    single = IdentityMatcher(faces[0], 0.6)
    assert single.distance_of(stranger) == pytest.approx(float(pairwise[0]))
