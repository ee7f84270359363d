"""ImageClassificationData: discovery, image modes, broken files, transforms, targets, loaders, real data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from alkit.vision import ImageClassificationData, ImageLoadError, UnlabelledImageDataset
from alkit.vision import datasets as datasets_module
from tests.vision.conftest import make_tree, write_image

SIZE = 16


def _dm(train=None, **kwargs) -> ImageClassificationData:
    kwargs.setdefault("image_size", SIZE)
    return ImageClassificationData.from_folders(train_folder=train, **kwargs)


def test_discovers_every_pillow_image_and_skips_junk(image_tree: Path):
    (image_tree / "ants" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (image_tree / "ants" / "._a4.jpg").write_bytes(b"\x00\x05\x16\x07 mac resource fork")  # hidden, image suffix
    (image_tree / "bees" / "notes.txt").write_text("not an image")
    (image_tree / ".ipynb_checkpoints").mkdir()  # hidden folder is not a class
    dm = _dm(image_tree)

    assert dm.classes == ["ants", "bees"]
    assert dm.num_classes == 2
    names = sorted(Path(p).name for p in dm.train_dataset.paths)
    expected = sorted(p.name for p in image_tree.glob("*/*") if p.suffix not in (".txt",) and p.name[0] != ".")
    assert names == expected and len(names) == 12
    assert "a1 with space.gif" in names and "a2.JPEG" in names


def test_every_mode_loads_as_rgb_tensor(image_tree: Path):
    dm = _dm(image_tree)
    modes = {Path(p).name: Image.open(p).mode for p in dm.train_dataset.paths}
    assert {"P", "RGBA", "L", "RGB"} <= set(modes.values())  # the fixture really covers the modes
    dataset = dm.train_dataset_for_inference()
    for index in range(len(dataset)):
        x, y = dataset[index]
        assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32
        assert y == dataset.targets[index]


def test_targets_follow_class_folders_without_reading_images(image_tree: Path, monkeypatch):
    dm = _dm(image_tree)

    def no_decoding(path):
        raise AssertionError("targets must not decode images")

    monkeypatch.setattr(datasets_module, "load_rgb", no_decoding)
    targets = dm.train_dataset.targets
    assert isinstance(targets, list) and all(isinstance(t, int) for t in targets)
    assert targets == [dm.classes.index(Path(p).parent.name) for p in dm.train_dataset.paths]
    assert dm.train_dataset_for_inference().targets == targets


def test_val_folder_missing_a_class_keeps_label_numbers(image_tree: Path, tmp_path: Path):
    val = make_tree(tmp_path / "val", {"bees": [("v0.png", "RGB"), ("v1.png", "RGB")]})
    dm = _dm(image_tree, val_folder=val)
    assert dm.val_dataset.targets == [1, 1]  # "bees" is class 1 of the training folder, not 0
    assert dm.val_dataset.classes == ["ants", "bees"]


def test_val_folder_with_unknown_class_is_an_error_naming_it(image_tree: Path, tmp_path: Path):
    val = make_tree(tmp_path / "val", {"wasps": [("w.png", "RGB")]})
    with pytest.raises(ValueError, match=r"val_folder=.*wasps"):
        _dm(image_tree, val_folder=val)


def test_corrupt_file_fails_at_construction_naming_its_path(image_tree: Path):
    broken = image_tree / "bees" / "broken image.jpg"
    broken.write_bytes(b"this is not a jpeg at all" * 10)
    empty = image_tree / "ants" / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError) as info:
        _dm(image_tree)
    message = str(info.value)
    assert str(broken) in message and str(empty) in message and "2 unreadable" in message


def test_truncated_file_fails_at_load_naming_its_path_also_in_a_worker(image_tree: Path):
    good = write_image(image_tree / "bees" / "big.jpg", "RGB", size=(200, 200), seed=99)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])  # header intact, pixels cut off
    dm = _dm(image_tree, batch_size=32, num_workers=1, check_images=False)  # unchecked up front (see test_early_errors)
    with pytest.raises(ImageLoadError, match="big.jpg"):
        for _ in dm.make_dataloader(dm.train_dataset_for_inference()):
            pass


def test_training_transform_is_random_and_evaluation_is_deterministic(image_tree: Path, tmp_path: Path):
    val = make_tree(tmp_path / "val", {"ants": [("v.png", "RGB")]}, size=(64, 48))
    predict = make_tree(tmp_path / "predict", {"ants": [("p.png", "RGB")]}, size=(64, 48))
    dm = _dm(image_tree, val_folder=val, test_folder=val, predict_folder=predict / "ants")
    torch.manual_seed(0)
    train_draws = [dm.train_dataset[0][0] for _ in range(5)]
    assert any(not torch.equal(train_draws[0], other) for other in train_draws[1:])
    for dataset in (dm.val_dataset, dm.test_dataset, dm.train_dataset_for_inference()):
        first, second = dataset[0][0], dataset[0][0]
        assert torch.equal(first, second)
    assert torch.equal(dm.predict_dataset[0], dm.predict_dataset[0])
    # the inference view serves the same files, in the same order, as the training view
    assert dm.train_dataset_for_inference().paths == dm.train_dataset.paths


def test_eval_transform_normalises_with_imagenet_statistics(tmp_path: Path):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.new("RGB", (20, 20), (124, 116, 104)).save(folder / "mean.png")  # ~ImageNet mean colour
    dm = ImageClassificationData.from_folders(predict_folder=folder, image_size=8)
    x = dm.predict_dataset[0]
    assert x.shape == (3, 8, 8) and x.abs().max() < 0.02


def test_flat_predict_folder_gives_unlabelled_images(tmp_path: Path):
    folder = tmp_path / "flat"
    for i in range(3):
        write_image(folder / f"img {i}.gif", "P", seed=i)
    dm = ImageClassificationData.from_folders(predict_folder=folder, image_size=SIZE, batch_size=2)
    assert isinstance(dm.predict_dataset, UnlabelledImageDataset) and len(dm.predict_dataset) == 3
    assert dm.classes is None
    batches = list(dm.predict_dataloader())
    assert [b.shape for b in batches] == [(2, 3, SIZE, SIZE), (1, 3, SIZE, SIZE)]


def test_custom_transforms_mapping_overrides_one_pipeline(image_tree: Path):
    calls = []

    def eval_tf(image):
        calls.append(image.mode)
        return torch.zeros(1)

    dm = _dm(image_tree, transforms={"eval": eval_tf})
    assert torch.equal(dm.train_dataset_for_inference()[0][0], torch.zeros(1)) and calls == ["RGB"]
    assert dm.train_dataset[0][0].shape == (3, SIZE, SIZE)  # training pipeline kept its default


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0, got -1"),
        ({"image_size": 2.5}, "image_size must be an integer >= 1, got 2.5"),
        ({"transforms": {"training": lambda x: x}}, r"unknown key\(s\) \['training'\].*\['train', 'eval'\]"),
        ({"transforms": 3}, "transforms must be None, a callable or a mapping"),
    ],
)
def test_bad_arguments_are_named(image_tree: Path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _dm(image_tree, **kwargs)


def test_missing_folders_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="val_folder=.*nowhere"):
        ImageClassificationData.from_folders(val_folder=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="at least one of train_folder"):
        ImageClassificationData.from_folders()
    (tmp_path / "empty" / "ants").mkdir(parents=True)
    (tmp_path / "empty" / "bees").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train_folder=.*no image files"):
        ImageClassificationData.from_folders(train_folder=tmp_path / "empty")


def test_dataloaders_batch_and_shuffle_reproducibly(image_tree: Path):
    dm = _dm(image_tree, batch_size=5, seed=3)
    batches = list(dm.train_dataloader())
    assert [len(y) for _, y in batches] == [5, 5, 2]
    assert batches[0][0].shape == (5, 3, SIZE, SIZE)

    def order(seed):
        loader = _dm(image_tree, seed=seed).train_dataloader()
        return list(loader.sampler)

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert sorted(order(3)) == list(range(12))


def test_missing_splits_give_clear_errors_or_no_batches(image_tree: Path):
    dm = _dm(image_tree)
    assert dm.val_dataloader() == []  # Lightning then simply skips validation
    with pytest.raises(RuntimeError, match="no test set"):
        dm.test_dataloader()
    with pytest.raises(RuntimeError, match="no predict set"):
        dm.predict_dataloader()


def test_works_with_a_multiprocess_dataloader(image_tree: Path):
    dm = _dm(image_tree, batch_size=12, num_workers=1)
    ((x, y),) = list(dm.make_dataloader(dm.train_dataset_for_inference()))
    assert x.shape == (12, 3, SIZE, SIZE) and y.tolist() == dm.train_dataset.targets


def test_real_hymenoptera_every_image_loads(hymenoptera_dir: Path):
    dm = ImageClassificationData.from_folders(
        train_folder=hymenoptera_dir / "train", val_folder=hymenoptera_dir / "val", image_size=32, batch_size=64
    )
    assert dm.classes == ["ants", "bees"]
    assert len(dm.train_dataset) == 245 and len(dm.val_dataset) == 153
    names = {os.path.basename(p) for p in dm.train_dataset.paths + dm.val_dataset.paths}
    assert {"imageNotFound.gif", "formica.jpeg", "ant photos.jpg"} <= names
    seen = 0
    for dataset in (dm.train_dataset_for_inference(), dm.val_dataset):
        loader = DataLoader(dataset, batch_size=64)
        for x, y in loader:
            assert x.shape[1:] == (3, 32, 32) and torch.isfinite(x).all()
            seen += len(y)
    assert seen == 398
    assert sorted(set(dm.train_dataset.targets)) == [0, 1]


def test_copied_real_folder_with_a_corrupt_file_names_it(hymenoptera_dir: Path, tmp_path: Path):
    train = tmp_path / "train"
    shutil.copytree(hymenoptera_dir / "val", train)
    bad = train / "bees" / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        ImageClassificationData.from_folders(train_folder=train)
