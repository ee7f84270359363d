"""Bad input is a clear error before any work: it names the argument, the value given and what is accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alkit
from alkit.active import ActiveLearningDataModule, ActiveLearningLoop
from alkit.kfold import kfold_fit
from alkit.lightning import pl
from alkit.vision import ImageClassificationData
from alkit.vision.images import ImageLoadError
from tests.active.synthetic import TinyData
from tests.active.test_loop import TinyClassifier
from tests.kfold._helpers import BlobDataWithTest, Classifier

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (see ``tests/conftest.py``)."""


class CountTraining(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self.batches += 1


# ------------------------------------------------------------------------------------------------ active learning
@pytest.mark.parametrize(
    ("kwargs", "pool"),
    [
        (dict(initial_num_labels=4, query_size=17), 16),  # 20 samples, 4 labelled: a pool of 16
        (dict(initial_num_labels=4, query_size=40), 16),
        (dict(initial_num_labels=4, query_size=5, pool_size=3), 3),  # only 3 scored per round
    ],
)
def test_query_size_larger_than_the_pool_is_refused(kwargs, pool):
    with pytest.raises(ValueError) as caught:
        ActiveLearningDataModule(TinyData(n=20), seed=0, **kwargs)
    message = str(caught.value)
    assert f"query_size={kwargs['query_size']}" in message and f"accepted: 1..{pool}" in message, message


def test_query_size_equal_to_the_pool_is_accepted():
    datamodule = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, query_size=16, seed=0)
    assert len(datamodule.pool_indices) == 16


def _active_run(tmp_path, heuristic, inference_iteration, counter):
    datamodule = ActiveLearningDataModule(
        TinyData(n=20), heuristic=heuristic, initial_num_labels=4, query_size=2, seed=0
    )
    trainer = alkit.Trainer(
        max_epochs=2, default_root_dir=tmp_path, enable_checkpointing=False, callbacks=[counter], **QUIET
    )
    loop = ActiveLearningLoop(inference_iteration=inference_iteration, checkpoint_each_round=False)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(TinyClassifier(), datamodule=datamodule)
    return loop


@pytest.mark.parametrize("heuristic", ["bald", "variance", "variation_ratios"])
def test_one_inference_iteration_with_an_mc_heuristic_is_refused_before_training(tmp_path, heuristic):
    counter = CountTraining()
    with pytest.raises(ValueError) as caught:
        _active_run(tmp_path, heuristic, 1, counter)
    message = str(caught.value)
    assert "inference_iteration=1" in message and "accepted: an int >= 2" in message, message
    assert counter.batches == 0


def test_one_inference_iteration_with_entropy_runs(tmp_path):
    loop = _active_run(tmp_path, "entropy", 1, CountTraining())
    assert len(loop.history) == 2


# ------------------------------------------------------------------------------------------------ image folders
def _write_images(folder: Path, classes=("ants", "bees"), per_class=3, suffix=".jpg") -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / name / f"{i}{suffix}"
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def test_from_folders_refuses_a_single_class(tmp_path):
    _write_images(tmp_path / "train", classes=("ants",))
    with pytest.raises(ValueError) as caught:
        ImageClassificationData.from_folders(train_folder=tmp_path / "train")
    message = str(caught.value)
    assert "train_folder=" in message and str(tmp_path / "train") in message and "['ants']" in message, message
    assert "at least 2 classes" in message


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_found_when_the_datamodule_is_built(tmp_path, suffix):
    paths = _write_images(tmp_path / "train", suffix=suffix)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as caught:
        ImageClassificationData.from_folders(train_folder=tmp_path / "train")
    assert str(paths[2]) in str(caught.value) and "truncated" in str(caught.value)


def test_a_truncated_image_not_checked_up_front_names_the_file_when_loaded(tmp_path):
    paths = _write_images(tmp_path / "train")
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    datamodule = ImageClassificationData.from_folders(train_folder=tmp_path / "train", check_images=False)
    index = datamodule.train_dataset.paths.index(str(paths[0]))
    with pytest.raises(ImageLoadError) as caught:
        datamodule.train_dataset[index]
    assert str(paths[0]) in str(caught.value)


def test_a_jpeg_with_data_after_its_end_marker_is_accepted(tmp_path):
    """Motion photos append a video after the JPEG's end marker: a valid image, not a truncated one."""
    paths = _write_images(tmp_path / "train")
    with open(paths[0], "ab") as handle:
        handle.write(bytes(range(256)) * 64)  # 16 KB of trailing data, no end marker in the file's last KB
    datamodule = ImageClassificationData.from_folders(train_folder=tmp_path / "train")
    assert len(datamodule.train_dataset) == 6


# ------------------------------------------------------------------------------------------------ k-fold resume
def _kfold(root: Path, ckpt_path=None, counter=None):
    trainer = alkit.Trainer(max_epochs=1, default_root_dir=root, callbacks=[counter] if counter else [], **QUIET)
    return kfold_fit(Classifier(), BlobDataWithTest(n=24), k=3, seed=0, trainer=trainer, ckpt_path=ckpt_path)


def test_kfold_resume_with_a_truncated_earlier_fold_checkpoint_fails_before_training(tmp_path):
    result = _kfold(tmp_path / "run")
    fold_0 = Path(result.checkpoint_paths[0])
    data = fold_0.read_bytes()
    fold_0.write_bytes(data[: len(data) // 3])
    counter = CountTraining()
    with pytest.raises(ValueError) as caught:
        _kfold(tmp_path / "run", ckpt_path=result.checkpoint_paths[1], counter=counter)
    message = str(caught.value)
    assert "fold 0's checkpoint" in message and str(fold_0) in message and "truncated" in message, message
    assert counter.batches == 0


def test_kfold_resumes_from_a_moved_run_folder(tmp_path):
    """Fold checkpoints are recorded relative to the run folder: a moved folder resumes from its new place."""
    result = _kfold(tmp_path / "run")
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = tmp_path / "moved" / Path(result.checkpoint_paths[1]).relative_to(tmp_path / "run")
    resumed = _kfold(tmp_path / "moved", ckpt_path=moved)
    assert resumed.val_metrics == result.val_metrics and resumed.ensemble_metrics == result.ensemble_metrics
    assert all(Path(path).is_relative_to(tmp_path / "moved") for path in resumed.checkpoint_paths)


def test_kfold_resume_from_a_moved_folder_without_its_new_place_fails_before_training(tmp_path):
    result = _kfold(tmp_path / "run")
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = tmp_path / "moved" / Path(result.checkpoint_paths[1]).relative_to(tmp_path / "run")
    counter = CountTraining()
    with pytest.raises(FileNotFoundError) as caught:
        _kfold(tmp_path / "elsewhere", ckpt_path=moved, counter=counter)  # default_root_dir not the moved folder
    message = str(caught.value)
    assert "fold 0's checkpoint" in message and "moved" in message and "default_root_dir" in message, message
    assert counter.batches == 0


def test_kfold_resume_from_a_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        _kfold(tmp_path / "run", ckpt_path=tmp_path / "nowhere.ckpt")
    assert "ckpt_path=" in str(caught.value) and "nowhere.ckpt" in str(caught.value)


def test_a_truncated_resume_checkpoint_names_its_path(tmp_path):
    result = _kfold(tmp_path / "run")
    last = Path(result.checkpoint_paths[2])
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError) as caught:
        _kfold(tmp_path / "run2", ckpt_path=truncated)
    assert "ckpt_path=" in str(caught.value) and str(truncated) in str(caught.value)
