"""Every user error of the ``alkit`` command: one clear line on stderr, exit status 2, no output folder created.

Tiny image folders are made with PIL in ``tmp_path``; a corrupt image is a truncated JPEG. No network, no shared data.
Each case runs with the current directory in ``tmp_path`` so that a default ``alkit_runs/`` folder would show up there.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from alkit import cli  # noqa: E402
from alkit.demos import hymenoptera  # noqa: E402


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (see ``tests/conftest.py``)."""


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def _class_folders(root: Path, classes=("ants", "bees"), per_class: int = 6) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _image(root / name / f"{i}.jpg", seed=100 * c + i)
    return root


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a JPEG cut in the middle: no end-of-image marker
    return path


def _garbage_weights(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"this is not a torch file\n" * 10)
    return path


def _fails_cleanly(argv: list[str], tmp_path: Path, capsys, monkeypatch, *expected: str) -> str:
    """``alkit argv`` exits 2 with one stderr line holding ``expected``; neither ``--output`` nor alkit_runs exists."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = cli.main([*argv, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists()
    assert not (tmp_path / "alkit_runs").exists()
    # the same without --output: the default folder is not created either
    code = cli.main(argv)
    assert code == 2
    capsys.readouterr()
    assert not (tmp_path / "alkit_runs").exists()
    return lines[0]


# ------------------------------------------------------------------------------------------------ alkit demo
def _demo_data(tmp_path: Path, **kwargs) -> Path:
    root = tmp_path / "hymenoptera"
    _class_folders(root / "train", **kwargs)
    _class_folders(root / "val", per_class=2)
    return root


def _demo(data: Path, *flags: str) -> list[str]:
    return ["demo", "hymenoptera", "--quick", "--weights", "none", "--data-dir", str(data), *flags]


def test_demo_corrupt_image(tmp_path, capsys, monkeypatch):
    data = _demo_data(tmp_path)
    _truncate(data / "train" / "bees" / "3.jpg")
    _fails_cleanly(_demo(data), tmp_path, capsys, monkeypatch, "--data-dir", str(data), "3.jpg", "accepted:")


def test_demo_single_class_folder(tmp_path, capsys, monkeypatch):
    data = _demo_data(tmp_path, classes=("ants",))
    _fails_cleanly(_demo(data), tmp_path, capsys, monkeypatch, "--data-dir", "single class", "2 or more")


def test_demo_garbage_weights_file(tmp_path, capsys, monkeypatch):
    data = _demo_data(tmp_path)
    weights = _garbage_weights(tmp_path)
    argv = ["demo", "hymenoptera", "--quick", "--data-dir", str(data), "--weights", str(weights)]
    _fails_cleanly(argv, tmp_path, capsys, monkeypatch, f"--weights {str(weights)!r}", "weights_only", "accepted:")


def test_demo_weights_of_another_model(tmp_path, capsys, monkeypatch):
    data = _demo_data(tmp_path)
    weights = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(2, 2)}, weights)  # a loadable state dict, but not MobileNetV2's
    argv = ["demo", "hymenoptera", "--quick", "--data-dir", str(data), "--weights", str(weights)]
    _fails_cleanly(argv, tmp_path, capsys, monkeypatch, "--weights", "--backbone mobilenet_v2", "accepted:")


def test_demo_quick_keeps_an_explicit_initial_labels_and_refuses_it(tmp_path, capsys, monkeypatch):
    data = _demo_data(tmp_path)
    _fails_cleanly(_demo(data, "--initial-labels", "100000"), tmp_path, capsys, monkeypatch, "--initial-labels 100000")


def test_quick_presets_only_the_flags_not_given():
    args = hymenoptera.build_parser().parse_args(["--quick", "--rounds", "9", "--image-size", "96"])
    try:
        hymenoptera.check_args(args)
    except Exception:
        pass  # no images here: the data check fails last, after the settings were applied
    assert args.rounds == 9 and args.image_size == 96  # given explicitly: kept
    assert args.query_size == hymenoptera.QUICK["query_size"]  # not given: --quick's preset
    assert args.pool_size == hymenoptera.QUICK["pool_size"]


# ------------------------------------------------------------------------------------------------ alkit kfold
def _kfold(data: Path, *flags: str) -> list[str]:
    return ["kfold", "--data-dir", str(data), "--weights", "none", "--max-epochs", "1", *flags]


def test_kfold_empty_folder(tmp_path, capsys, monkeypatch):
    data = tmp_path / "empty"
    data.mkdir()
    _fails_cleanly(_kfold(data), tmp_path, capsys, monkeypatch, "--data-dir", str(data), "accepted:")


def test_kfold_corrupt_image(tmp_path, capsys, monkeypatch):
    data = _class_folders(tmp_path / "images")
    _truncate(data / "ants" / "1.jpg")
    _fails_cleanly(_kfold(data), tmp_path, capsys, monkeypatch, "--data-dir", "1.jpg", "accepted:")


def test_kfold_single_class_folder(tmp_path, capsys, monkeypatch):
    data = _class_folders(tmp_path / "images", classes=("ants",))
    _fails_cleanly(_kfold(data), tmp_path, capsys, monkeypatch, "--data-dir", "single class")


def test_kfold_k_larger_than_the_images(tmp_path, capsys, monkeypatch):
    data = _class_folders(tmp_path / "images")
    _fails_cleanly(_kfold(data, "--k", "5000"), tmp_path, capsys, monkeypatch, "--k 5000", "12 samples", "[2, 12]")


def test_kfold_k_larger_than_the_smallest_class_with_stratify(tmp_path, capsys, monkeypatch):
    data = _class_folders(tmp_path / "images")
    argv = _kfold(data, "--k", "8", "--stratify")
    _fails_cleanly(argv, tmp_path, capsys, monkeypatch, "--k 8", "--stratify", "[2, 6]")


def test_kfold_k_larger_than_the_digits(tmp_path, capsys, monkeypatch):
    _fails_cleanly(["kfold", "--digits", "--k", "5000"], tmp_path, capsys, monkeypatch, "--k 5000", "accepted:")


def test_kfold_garbage_weights_file(tmp_path, capsys, monkeypatch):
    data = _class_folders(tmp_path / "images")
    weights = _garbage_weights(tmp_path)
    argv = ["kfold", "--data-dir", str(data), "--weights", str(weights)]
    _fails_cleanly(argv, tmp_path, capsys, monkeypatch, f"--weights {str(weights)!r}", "accepted:")
