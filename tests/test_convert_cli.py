"""`dfk convert` end to end: videos, images, batches, alignments, provenance and failures."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_cli.errors import ConfigError
from deepfake_cli.faces import create_backend
from deepfake_cli.media.synthetic import Clip, load_still, write_clip
from deepfake_cli.media.video import VideoReader, VideoWriter, audio_codec, ffmpeg_exe, has_audio
from deepfake_cli.convert import ConvertOptions, convert


@pytest.fixture()
def model_dir(tiny_swap_model: Path) -> Path:
    """The tiny trained swap model (original kind, 32 px)."""
    return tiny_swap_model


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _inner_face(frame: np.ndarray) -> tuple[slice, slice]:
    """The middle half (each way) of the landmarks' box: cheeks, nose and mouth."""
    points = create_backend("offline").detect(frame)[0].landmarks
    x0, y0 = points.min(axis=0).astype(int)
    x1, y1 = points.max(axis=0).astype(int)
    return slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, clip_a: Path, tiny_swap_model: Path) -> Path:
    """clip_a converted A->B once with the tiny model, at crf 12 (shared by the video checks below).

    At the default crf 18 re-encoding alone costs this small, detailed clip ~38.5 dB on the border;
    crf 12 keeps the encoder's loss out of the background check.
    """
    out = tmp_path_factory.mktemp("convert") / "swapped.mp4"
    convert(clip_a, out, tiny_swap_model, ConvertOptions(crf=12), progress=False)
    return out


def test_video_keeps_frame_count_size_fps_and_audio(converted: Path, clip_a: Path) -> None:
    source, result = VideoReader(clip_a), VideoReader(converted)
    assert (result.info.width, result.info.height) == (source.info.width, source.info.height)
    assert abs(result.info.fps - source.info.fps) < 1e-3
    assert sum(1 for _ in result) == sum(1 for _ in source) == 30
    assert has_audio(converted)


def test_background_is_unchanged_and_the_face_is_swapped(converted: Path, clip_a: Path) -> None:
    source = np.stack(list(VideoReader(clip_a)))
    result = np.stack(list(VideoReader(converted)))
    # the face moves within the middle of the frame: the outer 12% on each side is background
    border = source.shape[2] * 12 // 100
    assert _psnr(source[:, :, :border], result[:, :, :border]) >= 40.0
    assert _psnr(source[:, :, -border:], result[:, :, -border:]) >= 40.0
    inner = _inner_face(source[10])
    change = np.abs(result[10][inner].astype(int) - source[10][inner]).mean()
    assert change > 10


def test_video_is_tagged_as_synthetic_media(converted: Path) -> None:
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(converted)], capture_output=True, text=True)
    assert "Synthetic media (deepfake)" in probe.stderr and "tiny_swap_model" in probe.stderr


def test_cli_watermark_alignments_poisson_and_preset(run_dfk, model_dir: Path, clip_a: Path, faces_a: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "marked.mkv"
    result = run_dfk("-q", "convert", clip_a, "-m", model_dir, "-o", out, "--alignments", faces_a,
                     "--watermark", "--blend", "poisson", "--color", "reinhard", "--smooth", "0",
                     "--preset", "ultrafast")
    assert result.code == 0, result
    assert "30 frames (30 with a swapped face)" in result.out
    assert b"subme=0" in out.read_bytes()  # x264's ultrafast settings, recorded in the stream
    frame = next(iter(VideoReader(out)))
    corner = frame[-12:, 4:60].astype(int)
    assert corner.max() > 200 and corner.min() < 60  # white text on a dark box


def test_images_folder_swaps_faces_and_copies_faceless_images_byte_for_byte(
        run_dfk, model_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    face = load_still("astronaut")
    cv2.imwrite(str(images / "face.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(images / "sub" / "plain.jpg"), cv2.cvtColor(face[:, 380:], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    result = run_dfk("convert", images, "-m", model_dir, "-o", out)
    assert result.code == 0, result
    assert (out / "sub" / "plain.jpg").read_bytes() == (images / "sub" / "plain.jpg").read_bytes()
    swapped = (out / "face.png").read_bytes()
    assert b"Synthetic media (deepfake)" in swapped
    swapped_rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(swapped, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert swapped_rgb.shape == face.shape
    assert np.abs(swapped_rgb[_inner_face(face)].astype(int) - face[_inner_face(face)]).mean() > 10
    assert _psnr(swapped_rgb[:, :120], face[:, :120]) == 99.0  # far from the face: untouched


def test_batch_skips_a_corrupt_video_and_fails_at_the_end(run_dfk, model_dir: Path, clip_a_data: Clip,
                                                          tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "good.mp4", clip_a_data.frames[:6])
    (videos / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    out = tmp_path / "out"
    result = run_dfk("-q", "convert", videos, "-m", model_dir, "-o", out)
    assert result.code != 0
    assert sum(1 for _ in VideoReader(out / "good.mp4")) == 6
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]  # no half-written file
    failed = [line for line in result.out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "broken.mp4" in failed[0]
    assert _error_lines(result.err) == ["error: 1 of 2 inputs could not be converted"]


def test_a_failure_midway_leaves_no_output_file(model_dir: Path, clip_a: Path, tmp_path: Path) -> None:
    class Broken:
        size, coverage, kind = 64, 0.625, "original"

        def swap(self, faces, direction):  # noqa: ANN001, ANN201 - the SwapModel interface
            raise RuntimeError("model fell over")

    with pytest.raises(RuntimeError, match="fell over"):
        convert(clip_a, tmp_path / "out.mp4", model_dir, progress=False, model=Broken())
    assert list(tmp_path.glob("*.mp4")) == [] and list(tmp_path.glob(".out*")) == []


def test_bad_requests_are_one_line_errors(run_dfk, model_dir: Path, clip_a: Path, tmp_path: Path) -> None:
    learned = run_dfk("convert", clip_a, "-m", model_dir, "-o", tmp_path / "o.mp4", "--mask", "learned")
    assert learned.code == 2 and "needs a gan model" in _error_lines(learned.err)[0]
    same = run_dfk("convert", clip_a, "-m", model_dir, "-o", clip_a)
    assert same.code != 0 and "overwrite the input" in _error_lines(same.err)[0]
    preset = run_dfk("convert", clip_a, "-m", model_dir, "-o", tmp_path / "o.mp4", "--preset", "quick")
    assert preset.code == 2 and "--preset" in preset.err and not (tmp_path / "o.mp4").exists()
    with pytest.raises(ConfigError, match="--preset must be one of ultrafast"):
        ConvertOptions(preset="quick").check()
    redetect = run_dfk("convert", clip_a, "-m", model_dir, "-o", tmp_path / "o.mp4", "--redetect", "0")
    assert redetect.code == 2 and "--redetect must be at least 1" in _error_lines(redetect.err)[0]
    missing = run_dfk("convert", tmp_path / "nope.mp4", "-m", model_dir, "-o", tmp_path / "o.mp4")
    assert missing.code != 0 and "input not found" in _error_lines(missing.err)[0]
    unlisted = run_dfk("convert", clip_a, "-m", model_dir, "-o", tmp_path / "o.mp4",
                       "--alignments", _empty_alignments(tmp_path))
    assert unlisted.code != 0 and "lists no faces" in _error_lines(unlisted.err)[0]


def _empty_alignments(folder: Path) -> Path:
    from deepfake_cli.media.alignments import Alignments, save_alignments

    path = folder / "alignments.json"
    save_alignments(path, Alignments())
    return path


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def _audio_seconds(path: Path) -> float:
    """Length of the decoded audio track (16 kHz mono samples)."""
    pcm = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
                          "-ac", "1", "-ar", "16000", "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return len(pcm) / 2 / 16000


def test_odd_sized_video_keeps_its_exact_size(model_dir: Path, clip_a_data: Clip, tmp_path: Path) -> None:
    frames = [cv2.resize(frame, (65, 49), interpolation=cv2.INTER_AREA) for frame in clip_a_data.frames[:4]]
    source = tmp_path / "odd.mkv"
    write_clip(source, frames)
    out = tmp_path / "odd_out.mp4"
    convert(source, out, model_dir, progress=False)
    result = VideoReader(out)
    assert (result.info.width, result.info.height) == (65, 49)
    assert [frame.shape for frame in result] == [(49, 65, 3)] * 4


def test_webm_converts_into_a_folder_and_to_webm(run_dfk, model_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = videos / "talk.webm"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x72:rate=12", "-f", "lavfi", "-i", "sine=frequency=440",
            "-t", "1", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", clip)
    out = tmp_path / "out"
    folder = run_dfk("-q", "convert", videos, "-m", model_dir, "-o", out)
    assert folder.code == 0, folder
    single = run_dfk("-q", "convert", clip, "-m", model_dir, "-o", tmp_path / "one.webm")
    assert single.code == 0, single
    for path in (out / "talk.webm", tmp_path / "one.webm"):
        assert sum(1 for _ in VideoReader(path)) == 12
        assert has_audio(path) and audio_codec(path) == "opus"  # copied: WebM takes Opus
    mp4 = run_dfk("-q", "convert", clip, "-m", model_dir, "-o", tmp_path / "one.mp4")
    assert mp4.code == 0 and sum(1 for _ in VideoReader(tmp_path / "one.mp4")) == 12
    assert audio_codec(tmp_path / "one.mp4") == "aac"  # MP4 does not take Opus here: re-encoded
    h264 = run_dfk("convert", clip, "-m", model_dir, "-o", tmp_path / "h264.webm", "--codec", "libx264")
    assert h264.code == 2 and len(_error_lines(h264.err)) == 1 and "does not go into a .webm" in h264.err
    assert not (tmp_path / "h264.webm").exists()


def test_variable_frame_rate_keeps_frame_times_and_audio_sync(model_dir: Path, tmp_path: Path) -> None:
    """10 frames 100 ms apart, then 20 frames 25 ms apart, with a 1.5 s tone: no re-timing to a constant rate."""
    source = tmp_path / "vfr.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x72:rate=20", "-f", "lavfi", "-i", "sine=frequency=440",
            "-t", "1.5", "-vf", "settb=1/1000,setpts='if(lt(N,10),0.1*N,0.75+0.025*N)/TB'", "-fps_mode", "vfr",
            "-enc_time_base:v", "1:1000", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", "-c:a", "aac", source)
    times = [t for t, _ in VideoReader(source).timed()]
    assert len({round(b - a, 3) for a, b in zip(times, times[1:])}) > 1  # the source really is VFR
    out = tmp_path / "vfr_out.mp4"
    convert(source, out, model_dir, progress=False)
    result = [t for t, _ in VideoReader(out).timed()]
    assert len(result) == len(times)
    assert max(abs(a - b) for a, b in zip(times, result)) < 0.002  # kept to the millisecond; a frame is 25 ms
    assert audio_codec(out) == "aac" and abs(_audio_seconds(out) - _audio_seconds(source)) < 0.05


def _enospc_at(frame: int):  # noqa: ANN202 - a VideoWriter.write replacement
    """A ``VideoWriter.write`` whose ``frame``-th call (0-based) fails with ENOSPC."""
    original = VideoWriter.write
    calls = [0]

    def write(self: VideoWriter, frame_rgb: np.ndarray, seconds: float | None = None) -> None:
        calls[0] += 1
        if calls[0] > frame:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, frame_rgb, seconds)
    return write


# a fresh interpreter (forking this multi-threaded one can deadlock) converts and dies at a frame
_KILLED = """
import os, sys
from deepfake_cli.convert import convert
from deepfake_cli.media.video import VideoWriter
original, calls = VideoWriter.write, [0]
def write(self, frame_rgb, seconds=None):
    calls[0] += 1
    if calls[0] > int(sys.argv[4]):
        os._exit(17)
    original(self, frame_rgb, seconds)
VideoWriter.write = write
convert(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
"""


@pytest.mark.parametrize("fault", ["enospc", "kill"])
@pytest.mark.parametrize("frame", [0, 3, 5])
def test_a_fault_while_writing_never_leaves_a_partial_output_and_a_rerun_completes(
        fault: str, frame: int, model_dir: Path, clip_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.mp4"
    if fault == "kill":
        done = subprocess.run([sys.executable, "-c", _KILLED, str(clip_a), str(target), str(model_dir), str(frame)],
                              capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert done.returncode == 17, done.stderr[-2000:]
    else:
        monkeypatch.setattr(VideoWriter, "write", _enospc_at(frame))
        with pytest.raises(OSError, match="No space"):
            convert(clip_a, target, model_dir, progress=False)
        monkeypatch.undo()
        assert list(tmp_path.glob(".out*")) == []  # a failure it survives also removes its temp file
    assert not target.exists()
    convert(clip_a, target, model_dir, progress=False)
    assert sum(1 for _ in VideoReader(target)) == sum(1 for _ in VideoReader(clip_a))
