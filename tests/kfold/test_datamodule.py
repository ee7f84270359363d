"""KFoldDataModule: any datamodule becomes a k-fold one, with the wrapped loader settings and test set."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GroupKFold, ShuffleSplit
from torch.utils.data import DataLoader, Dataset, TensorDataset

from alkit.kfold import BaseKFoldDataModule, KFoldDataModule
from alkit.lightning import pl


def _indexed_dataset(n=40, num_classes=4):
    """x = the sample's own position, so a loader's batches tell exactly which samples it served."""
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(n) % num_classes
    return TensorDataset(x, y)


def _collate_tagging(batch):
    xs, ys = zip(*batch)
    return torch.stack(xs), torch.stack(ys)


class _DataModule(pl.LightningDataModule):
    def __init__(self, n=40, batch_size=7, with_test=True):
        super().__init__()
        self.n, self.batch_size, self.with_test = n, batch_size, with_test
        self.setup_calls = []

    def setup(self, stage):
        self.setup_calls.append(stage)
        self.train_set = _indexed_dataset(self.n)
        self.test_set = _indexed_dataset(10)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=_collate_tagging)


class _DataModuleWithTest(_DataModule):
    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=5)


def _served_positions(loader):
    return np.concatenate([batch[0].squeeze(1).long().numpy() for batch in loader])


def test_every_fold_trains_on_the_other_folds_and_validates_on_its_held_out_part():
    dm = KFoldDataModule(_DataModuleWithTest(n=40), seed=0)
    dm.setup("fit")
    dm.setup_folds(5)
    held_out = []
    for i in range(5):
        dm.setup_fold_index(i)
        train, val = _served_positions(dm.train_dataloader()), _served_positions(dm.val_dataloader())
        assert not set(train) & set(val)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(40))
        np.testing.assert_array_equal(val, dm.fold_indices(i).val_indices)
        held_out.append(val)
    np.testing.assert_array_equal(np.sort(np.concatenate(held_out)), np.arange(40))
    assert dm.fold_sizes == [(32, 8)] * 5
    assert dm.num_folds == 5


def test_loader_settings_come_from_the_wrapped_train_dataloader():
    dm = KFoldDataModule(_DataModule(batch_size=3))
    dm.setup_folds(4)
    dm.setup_fold_index(1)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.batch_size == 3 and val.batch_size == 3
    assert train.collate_fn is _collate_tagging and val.collate_fn is _collate_tagging
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)


def test_train_dataset_attribute_is_used_when_there_is_no_train_dataloader():
    wrapped = pl.LightningDataModule()
    wrapped.train_dataset = _indexed_dataset(12)
    wrapped.batch_size = 4
    dm = KFoldDataModule(wrapped)
    dm.setup_folds(3)
    dm.setup_fold_index(0)
    assert dm.train_dataloader().batch_size == 4
    assert len(_served_positions(dm.val_dataloader())) == 4


def test_from_datasets_datamodules_work():
    wrapped = pl.LightningDataModule.from_datasets(train_dataset=_indexed_dataset(20), batch_size=5)
    dm = KFoldDataModule(wrapped)
    dm.setup_folds(4)
    dm.setup_fold_index(3)
    assert len(_served_positions(dm.train_dataloader())) == 15
    assert not dm.has_test_data


def test_test_set_is_the_wrapped_one_and_shared_by_all_folds():
    dm = KFoldDataModule(_DataModuleWithTest())
    assert dm.has_test_data
    dm.setup_folds(2)
    for i in range(2):
        dm.setup_fold_index(i)
        np.testing.assert_array_equal(_served_positions(dm.test_dataloader()), np.arange(10))


def test_no_test_set_is_reported_and_asking_for_it_fails_clearly():
    dm = KFoldDataModule(_DataModule())
    assert not dm.has_test_data
    with pytest.raises(RuntimeError, match="has no test_dataloader"):
        dm.test_dataloader()


class _TestLoaderRaises(_DataModule):
    def test_dataloader(self):
        raise RuntimeError("no test set: pass test_folder")


class _NoTestDataset(_DataModuleWithTest):
    test_dataset = None  # like ImageClassificationData without a test folder


@pytest.mark.parametrize("wrapped", [_TestLoaderRaises, _NoTestDataset])
def test_a_test_dataloader_that_cannot_serve_means_no_test_data(wrapped):
    dm = KFoldDataModule(wrapped())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not dm.has_test_data


def test_wrapped_setup_runs_once_per_stage_so_fold_indices_keep_pointing_at_the_same_samples():
    wrapped = _DataModuleWithTest()
    dm = KFoldDataModule(wrapped)
    dm.setup("fit")
    dm.setup_folds(2)
    dm.setup("fit")
    dm.setup_fold_index(0)
    dm.test_dataloader()
    dm.test_dataloader()
    assert wrapped.setup_calls == ["fit", "test"]


class _TargetsOnly(Dataset):
    """Stratification must read `targets`, never load the samples (which may be images)."""

    def __init__(self, targets):
        self.targets = targets
        self.loaded = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.loaded += 1
        return torch.zeros(1), self.targets[i]


def test_stratify_reads_the_targets_attribute_without_loading_samples():
    targets = [0] * 30 + [1] * 10
    dataset = _TargetsOnly(targets)
    wrapped = pl.LightningDataModule.from_datasets(train_dataset=dataset, batch_size=4)
    dm = KFoldDataModule(wrapped, stratify=True)
    dm.setup_folds(5)
    assert dataset.loaded == 0
    for i in range(5):
        val = dm.fold_indices(i).val_indices
        assert (np.asarray(targets)[val] == 1).sum() == 2


def test_groups_are_forwarded_to_the_splitter():
    groups = np.repeat(np.arange(8), 5)
    dm = KFoldDataModule(_DataModule(n=40), splitter=GroupKFold(4), groups=groups)
    dm.setup_folds(4)
    for i in range(4):
        fold = dm.fold_indices(i)
        assert not set(groups[fold.train_indices]) & set(groups[fold.val_indices])


def test_splitter_decides_the_number_of_folds_and_contradictions_are_rejected():
    dm = KFoldDataModule(_DataModule(n=40), splitter=ShuffleSplit(3, test_size=0.25))
    dm.setup_folds(None)
    assert dm.num_folds == 3
    with pytest.raises(ValueError, match="k=5 does not match splitter=ShuffleSplit"):
        dm.setup_folds(5)


def test_folds_are_the_same_in_every_process_copy():
    """ddp_spawn pickles the datamodule into each rank, which computes the folds itself."""
    a = KFoldDataModule(_DataModule(n=40), splitter=ShuffleSplit(4, test_size=0.2), seed=5)
    b = pickle.loads(pickle.dumps(a))
    a.setup_folds(4)
    b.setup_folds(4)
    assert a.folds_fingerprint() == b.folds_fingerprint()
    c = KFoldDataModule(_DataModule(n=40), splitter=ShuffleSplit(4, test_size=0.2), seed=6)
    c.setup_folds(4)
    assert c.folds_fingerprint() != a.folds_fingerprint()


class _Tagged(Dataset):
    def __init__(self, n, tag):
        self.n, self.tag = n, tag
        self.transform = (lambda x: x) if tag == "train" else None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), torch.tensor(self.tag == "eval")


class _WithEvalTransforms(pl.LightningDataModule):
    def setup(self, stage):
        self.train_set = _Tagged(20, "train")

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=4, shuffle=True)

    def train_dataset_for_evaluation(self):
        return _Tagged(20, "eval")


class _WithInferenceDataset(_WithEvalTransforms):
    """The name alkit.vision.ImageClassificationData (and the active-learning datamodule) use."""

    train_dataset_for_evaluation = None

    def train_dataset_for_inference(self):
        return _Tagged(20, "eval")


@pytest.mark.parametrize("wrapped", [_WithEvalTransforms, _WithInferenceDataset])
def test_held_out_fold_uses_the_eval_transform_dataset_when_offered(wrapped):
    dm = KFoldDataModule(wrapped())
    dm.setup_folds(4)
    dm.setup_fold_index(2)
    assert all(not batch[1].any() for batch in dm.train_dataloader())
    val_batches = list(dm.val_dataloader())
    assert all(batch[1].all() for batch in val_batches)
    np.testing.assert_array_equal(
        np.concatenate([b[0].squeeze(1).long().numpy() for b in val_batches]), dm.fold_indices(2).val_indices
    )


def test_without_eval_datasets_the_training_transforms_are_used_with_a_warning():
    class _NoEvalHook(_WithEvalTransforms):
        train_dataset_for_evaluation = None

    dm = KFoldDataModule(_NoEvalHook())
    dm.setup_folds(2)
    with pytest.warns(UserWarning, match="held-out folds use the training set's transforms"):
        dm.setup_fold_index(0)


def test_no_warning_when_the_training_set_has_no_transform():
    dm = KFoldDataModule(_DataModule())
    dm.setup_folds(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.setup_fold_index(0)


def test_base_datamodule_is_abstract():
    with pytest.raises(TypeError):
        BaseKFoldDataModule()


# ---------------------------------------------------------------------------------------------- bad input
def test_a_datamodule_without_training_data_is_rejected():
    dm = KFoldDataModule(pl.LightningDataModule())
    with pytest.raises(ValueError, match="has no training data"):
        dm.setup_folds(5)


def test_an_empty_training_set_is_rejected():
    dm = KFoldDataModule(pl.LightningDataModule.from_datasets(train_dataset=_indexed_dataset(0)))
    with pytest.raises(ValueError, match=r"has no usable training data: .*num_samples=0"):
        dm.setup_folds(5)
    wrapped = pl.LightningDataModule()
    wrapped.train_dataset = _indexed_dataset(0)
    with pytest.raises(ValueError, match=r"training set is empty \(0 samples\)"):
        KFoldDataModule(wrapped).setup_folds(5)


def test_a_non_datamodule_is_rejected():
    with pytest.raises(TypeError, match=r"datamodule=.* expected a pytorch_lightning.LightningDataModule"):
        KFoldDataModule(_indexed_dataset(4))


def test_a_splitter_without_split_is_rejected_at_construction():
    with pytest.raises(TypeError, match=r"splitter=5 is invalid: it has no split"):
        KFoldDataModule(_DataModule(), splitter=5)


def test_groups_of_the_wrong_length_are_rejected():
    dm = KFoldDataModule(_DataModule(n=40), groups=np.arange(39))
    with pytest.raises(ValueError, match="groups has length 39 but the training set has 40 samples"):
        dm.setup_folds(4)


def test_fold_index_out_of_range_and_fold_before_setup_are_rejected():
    dm = KFoldDataModule(_DataModule())
    with pytest.raises(RuntimeError, match=r"call setup_folds\(num_folds\) first"):
        dm.setup_fold_index(0)
    dm.setup_folds(3)
    with pytest.raises(IndexError, match=r"fold_index=3 is out of range: accepted is 0 <= fold_index < 3"):
        dm.setup_fold_index(3)
    with pytest.raises(RuntimeError, match="no current fold"):
        dm.train_dataloader()


def _image_folders(root, per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("ants", "bees"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):  # noise, so random crops and flips change the pixels
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_image_classification_data_folds_validate_with_its_deterministic_eval_transform(tmp_path):
    from alkit.vision import ImageClassificationData

    wrapped = ImageClassificationData.from_folders(train_folder=_image_folders(tmp_path), batch_size=2, image_size=24)
    dm = KFoldDataModule(wrapped, stratify=True)
    dm.setup_folds(2)
    dm.setup_fold_index(0)
    val_set = dm.val_dataloader().dataset
    first, again = val_set[0][0], val_set[0][0]
    assert torch.equal(first, again)  # eval transform: the same tensor every time
    train_images = [dm.train_dataloader().dataset[0][0] for _ in range(8)]
    assert any(not torch.equal(train_images[0], image) for image in train_images[1:])  # random training transform
    for i in range(2):  # stratified with the dataset's `targets`: 2 ants and 2 bees held out per fold
        held_out = np.asarray(wrapped.train_dataset.targets)[dm.fold_indices(i).val_indices]
        assert sorted(held_out.tolist()) == [0, 0, 1, 1]


def test_a_seeded_wrapped_loader_gives_each_fold_its_own_reproducible_order():
    class _Seeded(_DataModule):
        def train_dataloader(self):
            generator = torch.Generator().manual_seed(3)
            return DataLoader(self.train_set, batch_size=4, shuffle=True, generator=generator)

    def order(fold):
        dm = KFoldDataModule(_Seeded())
        dm.setup_folds(2)
        dm.setup_fold_index(fold)
        return _served_positions(dm.train_dataloader())

    np.testing.assert_array_equal(order(1), order(1))  # no matter what ran before
    assert not np.array_equal(np.sort(order(0)), np.sort(order(1)))


class _AugmentingData(_DataModule):
    """A datamodule whose batch-transfer hook marks every training batch and records the trainer it ran under."""

    def __init__(self, n: int = 40) -> None:
        super().__init__(n=n)
        self.trainers_seen: list = []
        self.batches_seen = 0

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.batches_seen += 1
        self.trainers_seen.append(self.trainer)
        return batch


class _CountingModel(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(1, 4)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _quiet_trainer(root):
    from tests.quiet import quiet_trainer

    return quiet_trainer(max_epochs=1, default_root_dir=root)


def test_the_wrapped_datamodules_batch_transfer_hooks_run_under_the_kfold_trainer(tmp_path):
    from alkit.kfold import kfold_fit

    wrapped, model = _AugmentingData(n=40), _CountingModel()
    trainer = _quiet_trainer(tmp_path)
    kfold_fit(model, wrapped, k=2, trainer=trainer, ensemble=False, oof=False)
    # each fold trains on 20 samples in batches of 7 (3 batches) and validates on 20 (3 more): every one of them
    # went through the user's hook, under the trainer running the folds
    assert wrapped.batches_seen >= 2 * (3 + 3)
    assert set(map(id, wrapped.trainers_seen)) == {id(trainer)}


def test_a_datamodule_without_batch_transfer_hooks_leaves_lightnings_defaults():
    dm = KFoldDataModule(_DataModule(n=40), k=2)
    for name in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"):
        assert not pl.utilities.model_helpers.is_overridden(name, dm, pl.LightningDataModule)


class _ModelWithTransferHook(_CountingModel):
    hook_calls = 0  # on the class: kfold_fit trains copies of the model it is given

    def on_after_batch_transfer(self, batch, dataloader_idx):
        type(self).hook_calls += 1
        return batch


def test_the_models_batch_transfer_hook_runs_when_the_datamodule_has_none(tmp_path):
    from alkit.kfold import kfold_fit

    model = _ModelWithTransferHook()
    _ModelWithTransferHook.hook_calls = 0
    trainer = _quiet_trainer(tmp_path)
    kfold_fit(model, _DataModule(n=40), k=2, trainer=trainer, ensemble=False, oof=False)
    # Lightning then asks the model directly, without looking at the datamodule on every batch
    assert trainer._data_connector._datahook_selector.datamodule is None
    assert _ModelWithTransferHook.hook_calls >= 2 * (3 + 3)
