"""Download (or import) the hymenoptera ants-vs-bees images and install them verified into ``<dest>/hymenoptera_data``.

Usage::

    python data_scripts/download_hymenoptera.py                    # download into data/
    python data_scripts/download_hymenoptera.py --dest /some/dir
    python data_scripts/download_hymenoptera.py --from hymenoptera_data.zip   # offline: a zip you already have
    python data_scripts/download_hymenoptera.py --from ../shared/data         # or an extracted folder

Sources, tried in order: PyTorch's transfer-learning tutorial archive, then Lightning Flash's mirror of it.

Verification. We searched public code, documentation and issue trackers for a published checksum of
``hymenoptera_data.zip`` and found none: every user of the archive (the PyTorch tutorial, Flash's ``download_data``,
torchvision ``download_and_extract_archive`` calls) downloads it unverified. A zip's own hash also changes if a
mirror re-packs identical images. So the script verifies the *content* instead: ``hymenoptera_data.sha256`` (next to
this file, ``sha256sum`` format, paths relative to ``hymenoptera_data/``) lists the 398 images and their SHA-256,
computed from the reference copy kept in the project's ``shared/data/hymenoptera_data`` (245 train + 153 val, with
the dataset's quirks: a palette GIF, a ``.jpeg``, a name with a space). The installed folder must hold exactly these
files with exactly these hashes (macOS ``__MACOSX``/dot-files in an archive are ignored). The archive's SHA-256 is
printed so it can be recorded.

Safety. Archive members with absolute paths, ``..`` components or symlinks are refused before anything is written;
everything is extracted into a temporary folder inside ``--dest`` and moved into place with one atomic rename, so an
interrupted run never leaves a half-written ``hymenoptera_data``. An existing folder is kept unless it fails
verification and ``--force`` is given. Errors (offline, checksum mismatch, unsafe archive) print one clear message and
exit with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

URLS = (
    "https://download.pytorch.org/tutorial/hymenoptera_data.zip",  # the PyTorch transfer-learning tutorial
    "https://pl-flash-data.s3.amazonaws.com/hymenoptera_data.zip",  # Lightning Flash's mirror (its demos use it)
)
DATASET = "hymenoptera_data"
MANIFEST = Path(__file__).with_name("hymenoptera_data.sha256")
MAX_UNCOMPRESSED_BYTES = 1 << 30  # the real archive expands to ~47 MB; refuse zip bombs
_CHUNK = 1 << 20


class InstallError(Exception):
    """A failure the user can act on; ``main`` prints it without a traceback."""


# -- manifest ----------------------------------------------------------------------------------------------------------


def _ignored(relative: PurePosixPath) -> bool:
    """macOS archive litter: ``__MACOSX/`` trees and dot-files such as ``.DS_Store`` or ``._name.jpg``."""
    return any(part == "__MACOSX" or part.startswith(".") for part in relative.parts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compute_manifest(folder: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every (non-ignored) file below ``folder``."""
    manifest = {}
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if path.is_file() and not _ignored(relative):
            manifest[str(relative)] = sha256_file(path)
    return manifest


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    manifest = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split("  ", 1)
            manifest[name] = digest
    return manifest


def write_manifest(manifest: Mapping[str, str], path: Path) -> None:
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(manifest.items())), encoding="utf-8")


def verify(folder: Path, expected: Mapping[str, str]) -> None:
    """Raise :class:`InstallError` unless ``folder`` holds exactly the files of ``expected`` with their hashes."""
    actual = compute_manifest(folder)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    different = sorted(name for name in set(expected) & set(actual) if expected[name] != actual[name])
    if missing or extra or different:
        details = []
        for label, names in (("missing", missing), ("unexpected", extra), ("with a different sha256", different)):
            if names:
                details.append(f"{len(names)} {label} (e.g. {names[:3]})")
        raise InstallError(f"{folder} does not match the manifest of {len(expected)} files: " + "; ".join(details))


# -- sources -----------------------------------------------------------------------------------------------------------


def download(urls: Iterable[str], target: Path, timeout: float) -> str:
    """Stream the first URL that answers into ``target``; return the archive's sha256."""
    failures = []
    for url in urls:
        print(f"downloading {url}", flush=True)
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
            return digest.hexdigest()
        except (urllib.error.URLError, OSError) as error:  # URLError/HTTPError/timeouts are all OSErrors
            reason = getattr(error, "reason", None) or error
            failures.append(f"{url}: {reason}")
    raise InstallError(
        "could not download the archive (are you offline?)\n  "
        + "\n  ".join(failures)
        + "\nCopy hymenoptera_data.zip (or an extracted hymenoptera_data folder) to this machine and run again with "
        "--from PATH."
    )


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's relative path, or :class:`InstallError` if extracting it could write outside the target."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or path.is_absolute():
        raise InstallError(f"unsafe archive: member {info.filename!r} has an absolute path")
    if ".." in path.parts:
        raise InstallError(f"unsafe archive: member {info.filename!r} points outside the archive ('..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InstallError(f"unsafe archive: member {info.filename!r} is a symbolic link")
    return path


def extract_zip(archive: Path, target: Path) -> Path:
    """Check every member, then extract ``hymenoptera_data/**`` into ``target``; return the extracted folder."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise InstallError(f"{archive} is not a readable zip archive: {error}") from error
    with zf:
        members = [(info, _member_path(info)) for info in zf.infolist()]  # all checked before anything is written
        wanted = [(info, path) for info, path in members if not _ignored(path) and not info.is_dir()]
        if sum(info.file_size for info, _ in wanted) > MAX_UNCOMPRESSED_BYTES:
            raise InstallError(f"{archive} expands to more than {MAX_UNCOMPRESSED_BYTES} bytes; refusing to extract")
        outside = [str(path) for _, path in wanted if path.parts[0] != DATASET]
        if outside:
            raise InstallError(f"{archive} has files outside a top-level {DATASET}/ folder, e.g. {outside[:3]}")
        for info, path in wanted:
            destination = target.joinpath(*path.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
    extracted = target / DATASET
    if not extracted.is_dir():
        raise InstallError(f"{archive} contains no {DATASET}/ folder")
    return extracted


def _dataset_folder(folder: Path) -> Path:
    """Accept the ``hymenoptera_data`` folder itself or a folder containing it."""
    if (folder / DATASET).is_dir():
        return folder / DATASET
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return folder
    raise InstallError(f"--from {folder}: neither a {DATASET} folder (train/, val/) nor a folder containing one")


def _copy_tree(source: Path, target: Path) -> Path:
    """Copy file contents only: a read-only source (such as ``shared/``) must not give a read-only install."""
    target.mkdir(parents=True)
    for path in sorted(source.rglob("*")):
        relative = PurePosixPath(path.relative_to(source).as_posix())
        if _ignored(relative):
            continue
        destination = target.joinpath(*relative.parts)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
    return target


# -- install -----------------------------------------------------------------------------------------------------------


def install(
    dest: Path,
    source: Path | None = None,
    manifest: Mapping[str, str] | None = None,
    urls: Iterable[str] = URLS,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Install the verified dataset as ``dest/hymenoptera_data`` and return that path.

    ``source`` is a local zip or folder (no network); otherwise ``urls`` are tried in turn.
    """
    expected = read_manifest() if manifest is None else dict(manifest)
    final = dest / DATASET
    if final.exists():
        try:
            verify(final, expected)
            print(f"{final} is already present and verified ({len(expected)} files)")
            return final
        except InstallError as error:
            if not force:
                raise InstallError(f"{error}\nIt was left untouched; pass --force to replace it.") from None
    if source is not None and not source.exists():
        raise InstallError(f"--from {source}: no such file or folder")

    dest.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{DATASET}-", dir=dest))  # same filesystem: the final move is atomic
    try:
        if source is not None and source.is_dir():
            staged = _copy_tree(_dataset_folder(source), workdir / DATASET)
        else:
            archive = source
            if archive is None:
                archive = workdir / f"{DATASET}.zip"
                archive_sha256 = download(urls, archive, timeout)
                print(f"archive sha256: {archive_sha256}")
            staged = extract_zip(archive, workdir / "extracted")
        for path in list(staged.rglob("*")):  # drop archive litter so the installed tree is exactly the manifest
            if path.exists() and _ignored(PurePosixPath(path.relative_to(staged).as_posix())):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        verify(staged, expected)
        previous = None
        if final.exists():  # only with force: move the old tree aside, delete it once the new one is in place
            previous = workdir / "previous"
            os.replace(final, previous)
        try:
            os.replace(staged, final)
        except OSError:
            if previous is not None:
                os.replace(previous, final)
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"installed {len(expected)} verified files in {final}")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("data"), help="folder to install into (default: data/)")
    parser.add_argument(
        "--from", dest="source", type=Path, help="a local hymenoptera_data.zip or extracted folder (no download)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing folder that fails verification")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default: 60)")
    args = parser.parse_args(argv)
    try:
        install(args.dest, args.source, force=args.force, timeout=args.timeout)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was installed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
