"""No code runs from a checkpoint: every public path that reads a file refuses a malicious pickle, clearly.

The malicious file is a ``torch.save`` of an object whose ``__reduce__`` writes a marker file when unpickled; the
marker must never appear, and the error must name the argument and the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alkit
from alkit import cli
from alkit.active import ActiveLearningDataModule, ActiveLearningLoop
from alkit.kfold import EnsembleVotingModel, kfold_fit
from tests.active.synthetic import TinyData
from tests.kfold._helpers import BlobDataWithTest, Classifier

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (see ``tests/conftest.py``)."""


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture
def malicious(tmp_path):
    """``(path of a malicious checkpoint, marker path)``; the checkpoint looks like a Lightning one."""
    marker = tmp_path / "marker.txt"
    path = tmp_path / "malicious.ckpt"
    torch.save({"state_dict": {}, "loops": {}, "payload": _WritesMarker(marker)}, path)
    yield path, marker
    assert not marker.exists(), "unpickling the malicious checkpoint ran its code"


def _assert_refused(error: BaseException, argument: str, path: Path) -> None:
    message = str(error)
    assert argument in message and str(path) in message, message
    assert "refused" in message and "weights_only=True" in message, message


def _kfold_run(tmp_path: Path):
    return kfold_fit(
        Classifier(), BlobDataWithTest(n=24), k=2, seed=0, max_epochs=1, default_root_dir=tmp_path, **QUIET
    )


def test_alkit_checkpoints_load_weights_only(tmp_path):
    """The files alkit writes (fold checkpoints, the active-learning round checkpoint) hold only safe types."""
    result = _kfold_run(tmp_path / "kfold")
    _active_run(tmp_path / "active")
    files = [*result.checkpoint_paths, tmp_path / "active" / "active_learning_last_round.ckpt"]
    for path in files:
        assert isinstance(torch.load(path, weights_only=True), dict)


def test_ensemble_refuses_a_malicious_checkpoint(tmp_path, malicious):
    path, _ = malicious
    for model in (Classifier(), Classifier):  # a template instance, and a class loaded with load_from_checkpoint
        with pytest.raises(ValueError) as caught:
            EnsembleVotingModel(model, [path])
        _assert_refused(caught.value, "checkpoint_paths[0]", path)


def test_ensemble_refuses_before_building_any_model(tmp_path, malicious):
    """A good checkpoint first does not let the malicious second one be read late."""
    path, _ = malicious
    good = _kfold_run(tmp_path / "run").checkpoint_paths[0]
    with pytest.raises(ValueError) as caught:
        EnsembleVotingModel(Classifier(), [good, path])
    _assert_refused(caught.value, "checkpoint_paths[1]", path)


def test_kfold_fit_refuses_a_malicious_ckpt_path(tmp_path, malicious):
    path, _ = malicious
    with pytest.raises(ValueError) as caught:
        _kfold_run_resume(tmp_path / "run", path)
    _assert_refused(caught.value, "ckpt_path", path)


def _kfold_run_resume(root: Path, ckpt_path: Path):
    return kfold_fit(
        Classifier(),
        BlobDataWithTest(n=24),
        k=2,
        seed=0,
        max_epochs=1,
        default_root_dir=root,
        ckpt_path=ckpt_path,
        **QUIET,
    )


def test_kfold_resume_refuses_a_fold_record_pointing_at_a_malicious_file(tmp_path, malicious):
    """A clean checkpoint whose fold record names another file: that file is read safely too, before training."""
    path, _ = malicious
    result = _kfold_run(tmp_path / "run")
    checkpoint = torch.load(result.checkpoint_paths[0], weights_only=True)
    checkpoint["loops"]["fit_loop"]["state_dict"]["records"][0]["checkpoint"] = str(path)
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(ValueError) as caught:
        _kfold_run_resume(tmp_path / "resumed", tampered)
    _assert_refused(caught.value, "fold 0's checkpoint", path)
    assert not (tmp_path / "resumed").exists()  # refused before anything trained or was written


def _active_run(root: Path, ckpt_path: Path | None = None):
    torch.manual_seed(0)
    datamodule = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, query_size=2, seed=0)
    trainer = alkit.Trainer(max_epochs=2, default_root_dir=root, enable_checkpointing=False, **QUIET)
    loop = ActiveLearningLoop(label_epoch_frequency=1, export_path=root)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    from tests.active.test_loop import TinyClassifier

    trainer.fit(TinyClassifier(), datamodule=datamodule, ckpt_path=ckpt_path)
    return loop


def test_active_learning_resume_refuses_a_malicious_checkpoint(tmp_path, malicious):
    path, _ = malicious
    with pytest.raises(ValueError) as caught:
        _active_run(tmp_path / "run", ckpt_path=path)
    _assert_refused(caught.value, "ckpt_path", path)


def test_active_learning_resume_from_its_own_checkpoint_still_works(tmp_path):
    _active_run(tmp_path / "run")
    loop = _active_run(tmp_path / "resumed", ckpt_path=tmp_path / "run" / "active_learning_last_round.ckpt")
    assert len(loop.history) == 2


def test_demo_weights_refuses_a_malicious_file(tmp_path, malicious, capsys):
    path, _ = malicious
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    root / split / label / f"{i}.png"
                )
    argv = ["demo", "hymenoptera", "--data-dir", str(root), "--weights", str(path), "--backbone", "resnet18"]
    argv += ["--image-size", "32", "--rounds", "1", "--initial-labels", "2", "--query-size", "2"]
    argv += ["--output", str(tmp_path / "out")]
    try:
        status = cli.main(argv)
    except (ValueError, SystemExit) as error:  # the CLI's own exit handling is item 7's business
        message = str(error)
        status = None
    else:
        captured = capsys.readouterr()
        message = captured.err + captured.out
    assert status != 0
    assert "--weights" in message or "pretrained" in message, message
    assert str(path) in message, message


def test_a_truncated_checkpoint_names_its_path(tmp_path):
    result = _kfold_run(tmp_path / "run")
    truncated = tmp_path / "truncated.ckpt"
    data = Path(result.checkpoint_paths[0]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for attempt, argument in (
        (lambda: EnsembleVotingModel(Classifier(), [truncated]), "checkpoint_paths[0]"),
        (lambda: _kfold_run_resume(tmp_path / "resumed", truncated), "ckpt_path"),
        (lambda: _active_run(tmp_path / "active", ckpt_path=truncated), "ckpt_path"),
    ):
        with pytest.raises(ValueError) as caught:
            attempt()
        assert argument in str(caught.value) and str(truncated) in str(caught.value), str(caught.value)


def test_image_classifier_load_from_checkpoint_refuses_a_malicious_file(malicious):
    from alkit.vision import ImageClassifier

    path, _ = malicious
    with pytest.raises(ValueError) as caught:
        ImageClassifier.load_from_checkpoint(path)
    _assert_refused(caught.value, "checkpoint_path", path)


def test_an_optimizer_class_in_hyper_parameters_loads_weights_only(tmp_path):
    """``ImageClassifier(optimizer=torch.optim.SGD)`` saves the class: one of the safe types alkit registers."""
    from alkit.vision import ImageClassifier

    model = ImageClassifier("resnet18", num_classes=2, pretrained=False, optimizer=torch.optim.SGD)
    trainer = alkit.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert torch.load(tmp_path / "model.ckpt", weights_only=True)["hyper_parameters"]["optimizer"] is torch.optim.SGD
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "model.ckpt")
    assert loaded.hparams.optimizer is torch.optim.SGD


@pytest.mark.parametrize("method", ["validate", "test", "predict"])
def test_trainer_evaluation_ckpt_path_refuses_a_malicious_file(tmp_path, malicious, method):
    path, _ = malicious
    trainer = alkit.Trainer(default_root_dir=tmp_path, **QUIET)
    datamodule = BlobDataWithTest(n=24)
    with pytest.raises(ValueError) as caught:
        getattr(trainer, method)(Classifier(), datamodule=datamodule, ckpt_path=path)
    _assert_refused(caught.value, "ckpt_path", path)
