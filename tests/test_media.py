"""Media I/O: alignments file round trip, video streaming with audio, image decoding."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.errors import ConfigError, InputError
from deepfake_cli.media.alignments import Alignments, FaceRecord, load_alignments, save_alignments
from deepfake_cli.media.images import read_image
from deepfake_cli.media.synthetic import write_tone_wav
from deepfake_cli.media.video import (VideoReader, VideoWriter, audio_codec, copies_audio, ffmpeg_exe,
                                      video_encoder)


def _record(rng: np.random.Generator, frame: int) -> FaceRecord:
    return FaceRecord(source="/data/a.mp4", frame=frame, face=0, bbox=[1.0, 2.0, 30.0, 40.0], score=0.99,
                      landmarks=rng.uniform(0, 100, (68, 2)).round(3), matrix=rng.normal(size=(2, 3)).round(8),
                      size=64, file=f"a_{frame:06d}_0.png", sha1="ab" * 20)


def test_alignments_file_round_trips(tmp_path: Path, rng: np.random.Generator) -> None:
    original = Alignments(size=64, coverage=0.6, sources={"/data/a.mp4": {"frames": 2, "faces": 2}},
                          faces=[_record(rng, 0), _record(rng, 1)])
    save_alignments(tmp_path / "alignments.json", original)
    loaded = load_alignments(tmp_path)
    assert loaded.sources == original.sources and loaded.size == 64 and loaded.coverage == 0.6
    for a, b in zip(original.faces, loaded.faces):
        assert np.allclose(a.landmarks, b.landmarks) and np.allclose(a.matrix, b.matrix)
        assert (a.file, a.frame, a.sha1) == (b.file, b.frame, b.sha1)


def test_alignments_with_folder_in_file_name_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    record = _record(rng, 0)
    record.file = "../../etc/passwd"
    save_alignments(tmp_path / "alignments.json", Alignments(faces=[record]))
    with pytest.raises(InputError, match="must not contain folders"):
        load_alignments(tmp_path)


def test_wrong_version_and_garbage_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "alignments.json").write_text('{"version": 99, "faces": []}')
    with pytest.raises(InputError, match="unsupported alignments version 99"):
        load_alignments(tmp_path)
    (tmp_path / "alignments.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_alignments(tmp_path)


def _audio_md5(path: Path) -> str:
    """MD5 of the audio stream's packets, as stored (no decoding)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a",
                             "-c", "copy", "-f", "md5", "-"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_video_writer_keeps_frame_count_fps_and_copies_the_audio_bit_for_bit(
        tmp_path: Path, clip_a: Path, suffix: str) -> None:
    reader = VideoReader(clip_a)
    out = tmp_path / f"copy{suffix}"
    with VideoWriter(out, reader.info.width, reader.info.height, reader.info.fps, audio_from=clip_a) as writer:
        for frame in reader:
            writer.write(frame)
    copy = VideoReader(out)
    assert sum(1 for _ in copy) == 30 and copy.info.fps == pytest.approx(reader.info.fps)
    assert audio_codec(clip_a) == audio_codec(out) == "aac"
    assert _audio_md5(out) == _audio_md5(clip_a)


def test_audio_a_container_cannot_hold_is_re_encoded(tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    write_tone_wav(tone, 1.0)
    assert audio_codec(tone) == "pcm_s16le" and not copies_audio("pcm_s16le", ".mp4")
    assert copies_audio("pcm_s16le", ".mkv") and copies_audio("aac", ".MP4") and not copies_audio(None, ".mkv")
    out = tmp_path / "tone.mp4"
    with VideoWriter(out, 64, 48, 10, audio_from=tone) as writer:
        for value in range(10):
            writer.write(np.full((48, 64, 3), value * 20, np.uint8))
    assert audio_codec(out) == "aac"


@pytest.mark.parametrize(("preset", "subme"), [("ultrafast", b"subme=0"), ("veryfast", b"subme=2")])
def test_video_writer_encodes_with_the_chosen_x264_preset(tmp_path: Path, preset: str, subme: bytes) -> None:
    out = tmp_path / f"{preset}.mp4"
    with VideoWriter(out, 64, 48, 10, preset=preset) as writer:
        for value in (0, 80, 160):
            writer.write(np.full((48, 64, 3), value, np.uint8))
    assert subme in out.read_bytes()  # x264 records its settings in the stream


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_odd_sizes_are_kept_exactly(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    """H.264 4:2:0 needs even sizes: odd ones are encoded 4:4:4, never cropped or padded."""
    frames = [(rng.random((49, 65, 3)) * 255).astype(np.uint8) for _ in range(3)]
    out = tmp_path / f"odd{suffix}"
    with VideoWriter(out, 65, 49, 10) as writer:
        for frame in frames:
            writer.write(frame)
    decoded = list(VideoReader(out))
    assert len(decoded) == 3 and all(frame.shape == (49, 65, 3) for frame in decoded)


def test_webm_gets_vp9_and_opus_and_refuses_h264(tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    write_tone_wav(tone, 1.0)
    out = tmp_path / "clip.webm"
    with VideoWriter(out, 64, 48, 10, audio_from=tone) as writer:
        for value in range(10):
            writer.write(np.full((48, 64, 3), value * 20, np.uint8))
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "Video: vp9" in probe and audio_codec(out) == "opus" and sum(1 for _ in VideoReader(out)) == 10
    assert copies_audio("opus", ".webm") and copies_audio("vorbis", ".WEBM") and not copies_audio("aac", ".webm")
    assert video_encoder(".webm") == "libvpx-vp9" and video_encoder(".mp4") == "libx264"
    with pytest.raises(ConfigError, match="--codec libx264 does not go into a .webm"):
        VideoWriter(tmp_path / "h264.webm", 64, 48, 10, codec="libx264")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.webm", "tone.wav"]


def test_frame_times_are_kept(tmp_path: Path) -> None:
    """Frames written with their own (irregular) times come back at those times: no re-timing to 1/fps."""
    times = [0.0, 0.04, 0.1, 0.11, 0.3, 0.333, 0.5, 0.9, 1.2, 1.25]
    for suffix in (".mp4", ".mkv"):
        out = tmp_path / f"vfr{suffix}"
        with VideoWriter(out, 64, 48, 25) as writer:
            for i, seconds in enumerate(times):
                writer.write(np.full((48, 64, 3), i * 20, np.uint8), seconds)
        read = list(VideoReader(out).timed())
        assert [round(t, 4) for t, _ in read] == times, suffix
        assert all(abs(frame.mean() - i * 20) < 3 for i, (_, frame) in enumerate(read))  # in order, none repeated


def test_failed_encoding_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 48, 10) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_video_and_image_raise_input_errors(tmp_path: Path) -> None:
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="cannot open video"):
        VideoReader(bad_video)
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="cannot decode image"):
        read_image(bad_image)


def test_every_image_format_opencv_reads_is_an_input(tmp_path: Path, rng: np.random.Generator) -> None:
    """A folder of .pgm (grey), .tif, .webp, .bmp ... files is collected, and each reads as RGB."""
    import cv2

    from deepfake_cli.media.images import IMAGE_SUFFIXES
    from deepfake_cli.media.sources import collect_sources, iter_frames

    grey = (rng.random((40, 48)) * 255).astype(np.uint8)
    colour = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    folder = tmp_path / "photos"
    folder.mkdir()
    suffixes = sorted(IMAGE_SUFFIXES)
    for suffix in suffixes:
        assert cv2.imwrite(str(folder / f"x{suffix}"), grey if suffix in (".pgm", ".pbm") else colour), suffix
    (folder / "notes.txt").write_text("not an image")
    found = collect_sources([folder])
    assert sorted(p.suffix for p in found) == suffixes
    for source in found:
        frames = list(iter_frames(source))
        assert len(frames) == 1 and frames[0][1].shape == (40, 48, 3) and frames[0][1].dtype == np.uint8, source
    pgm = next(iter_frames(folder / "x.pgm"))[1]
    assert (pgm[..., 0] == grey).all() and (pgm[..., 1] == grey).all() and (pgm[..., 2] == grey).all()
    only_pgm = tmp_path / "orl"
    only_pgm.mkdir()
    cv2.imwrite(str(only_pgm / "1.pgm"), grey)
    assert collect_sources([only_pgm]) == [only_pgm / "1.pgm"]


def test_extract_finds_a_face_in_a_grey_pgm(tmp_path: Path) -> None:
    import cv2

    from deepfake_cli.extract import extract
    from deepfake_cli.media.alignments import load_alignments
    from deepfake_cli.media.images import read_image
    from deepfake_cli.media.synthetic import load_still

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "face.pgm"), cv2.cvtColor(load_still("grace_hopper"), cv2.COLOR_RGB2GRAY))
    summary = extract([folder], tmp_path / "faces", progress=False)
    assert summary.faces == 1
    face = read_image(tmp_path / "faces" / load_alignments(tmp_path / "faces").faces[0].file)
    assert face.shape[2] == 3 and (face[..., 0] == face[..., 1]).all()
