"""data_scripts/download_hymenoptera.py: verified install from a zip, a folder or the network; safe extraction."""

from __future__ import annotations

import io
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from data_scripts import download_hymenoptera as dh

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "data_scripts" / "download_hymenoptera.py"

FILES = {
    "train/ants/a 1.jpg": b"ant-one",
    "train/bees/b.gif": b"bee-gif",
    "val/ants/c.jpeg": b"ant-val",
}


def _manifest(files=FILES) -> dict[str, str]:
    import hashlib

    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def _zip(path: Path, files=FILES, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"hymenoptera_data/{name}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def _shared_data() -> Path:
    for shared in (REPO_ROOT / "shared", REPO_ROOT.parent / "shared"):
        if (shared / "data" / "hymenoptera_data" / "train").is_dir():
            return shared / "data"
    pytest.skip("shared hymenoptera data (shared/data/hymenoptera_data) not available")


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name != "hymenoptera_data") if dest.exists() else []


def test_installs_a_small_zip_verified_and_leaves_no_temporary_files(tmp_path: Path):
    archive = _zip(tmp_path / "small.zip", extra={"__MACOSX/hymenoptera_data/._a 1.jpg": b"mac", ".DS_Store": b"x"})
    dest = tmp_path / "data"
    installed = dh.install(dest, source=archive, manifest=_manifest())
    assert installed == dest / "hymenoptera_data"
    assert {str(p.relative_to(installed).as_posix()) for p in installed.rglob("*") if p.is_file()} == set(FILES)
    assert (installed / "train/ants/a 1.jpg").read_bytes() == b"ant-one"
    assert _leftovers(dest) == []


@pytest.mark.parametrize(
    ("member", "match"),
    [("../evil.txt", r"'\.\.'"), ("hymenoptera_data/../../evil.txt", r"'\.\.'"), ("/tmp/evil.txt", "absolute path")],
)
def test_unsafe_members_are_rejected_before_anything_is_written(tmp_path: Path, member, match):
    archive = _zip(tmp_path / "evil.zip", extra={member: b"pwned"})
    dest = tmp_path / "sub" / "data"
    with pytest.raises(dh.InstallError, match=match):
        dh.install(dest, source=archive, manifest=_manifest())
    assert not (dest / "hymenoptera_data").exists() and _leftovers(dest) == []
    assert not (tmp_path / "sub" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_members_are_rejected(tmp_path: Path):
    archive = _zip(tmp_path / "link.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("hymenoptera_data/train/ants/link.jpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(dh.InstallError, match="symbolic link"):
        dh.install(tmp_path / "data", source=archive, manifest=_manifest())


def test_content_that_differs_from_the_manifest_is_rejected(tmp_path: Path):
    tampered = dict(FILES, **{"val/ants/c.jpeg": b"something else"})
    archive = _zip(tmp_path / "tampered.zip", files={**tampered, "val/bees/new.jpg": b"extra"})
    dest = tmp_path / "data"
    with pytest.raises(dh.InstallError, match=r"1 unexpected.*1 with a different sha256.*val/ants/c.jpeg"):
        dh.install(dest, source=archive, manifest=_manifest())
    assert not (dest / "hymenoptera_data").exists() and _leftovers(dest) == []


def test_cli_rejects_an_archive_that_is_not_the_real_dataset(tmp_path: Path, capsys):
    archive = _zip(tmp_path / "small.zip")
    code = dh.main(["--from", str(archive), "--dest", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not match the manifest of 398 files" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "hymenoptera_data").exists()


def test_download_falls_back_to_the_mirror(tmp_path: Path, monkeypatch):
    payload = _zip(tmp_path / "served.zip").read_bytes()
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        if url == dh.URLS[0]:
            raise urllib.error.HTTPError(url, 503, "Service Unavailable", None, None)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    installed = dh.install(tmp_path / "data", manifest=_manifest())
    assert requested == list(dh.URLS)
    assert (installed / "train/bees/b.gif").read_bytes() == b"bee-gif"


def test_offline_is_a_clear_message_without_traceback(tmp_path: Path, monkeypatch, capsys):
    def offline(url, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    dest = tmp_path / "data"
    code = dh.main(["--dest", str(dest)])
    err = capsys.readouterr().err
    assert code == 1
    assert "could not download the archive (are you offline?)" in err
    assert all(url in err for url in dh.URLS) and "--from PATH" in err
    assert "Traceback" not in err
    assert not (dest / "hymenoptera_data").exists() and _leftovers(dest) == []


def test_existing_folder_is_kept_unless_forced(tmp_path: Path):
    dest = tmp_path / "data"
    (dest / "hymenoptera_data" / "train").mkdir(parents=True)
    (dest / "hymenoptera_data" / "train" / "mine.txt").write_text("user file")
    archive = _zip(tmp_path / "small.zip")
    with pytest.raises(dh.InstallError, match="left untouched; pass --force"):
        dh.install(dest, source=archive, manifest=_manifest())
    assert (dest / "hymenoptera_data" / "train" / "mine.txt").read_text() == "user file"
    dh.install(dest, source=archive, manifest=_manifest(), force=True)
    assert not (dest / "hymenoptera_data" / "train" / "mine.txt").exists()
    assert _leftovers(dest) == []


def test_script_runs_as_a_program_and_reports_a_missing_source(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--from", str(tmp_path / "nothing.zip"), "--dest", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: --from" in result.stderr and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_manifest_lists_the_398_files_of_the_real_dataset():
    manifest = dh.read_manifest()
    assert len(manifest) == 398
    assert sum(name.startswith("train/") for name in manifest) == 245
    assert sum(name.startswith("val/") for name in manifest) == 153
    assert {"train/ants/imageNotFound.gif", "train/ants/formica.jpeg", "train/ants/ant photos.jpg"} <= set(manifest)


@pytest.mark.parametrize("level", ["parent", "dataset"])
def test_from_the_shared_folder_installs_and_verifies_every_file(tmp_path: Path, capsys, level):
    shared = _shared_data()
    source = shared if level == "parent" else shared / "hymenoptera_data"
    dest = tmp_path / "data"
    assert dh.main(["--from", str(source), "--dest", str(dest)]) == 0
    installed = dest / "hymenoptera_data"
    assert dh.compute_manifest(installed) == dh.read_manifest()
    assert _leftovers(dest) == []
    assert dh.main(["--from", str(source), "--dest", str(dest)]) == 0  # second run: nothing to do
    assert "already present and verified (398 files)" in capsys.readouterr().out
    assert all(path.stat().st_mode & stat.S_IWUSR for path in [installed, *installed.rglob("*")])  # unlike shared/
