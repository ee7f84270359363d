"""The Flash demo's shape on the real hymenoptera images (skipped when ../shared is absent): small settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import alkit.active.loop as loop_module
from alkit.active import ActiveLearningDataModule
from alkit.active.loop import ActiveLearningLoop
from tests.quiet import quiet_trainer

REPO_ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [root / "shared" / "data" / "hymenoptera_data" for root in (REPO_ROOT, REPO_ROOT.parent)]
DATA = next((path for path in CANDIDATES if (path / "train").is_dir()), None)

pytestmark = pytest.mark.skipif(DATA is None, reason="shared/data/hymenoptera_data is not available")


def test_flash_demo_shape_runs_on_real_images(tmp_path, monkeypatch):
    from alkit.vision import ImageClassificationData, ImageClassifier

    torch.manual_seed(0)
    results = []
    original = loop_module.score_pool

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(loop_module, "score_pool", recording)
    datamodule = ActiveLearningDataModule(
        ImageClassificationData.from_folders(train_folder=DATA / "train", batch_size=2, image_size=32),
        initial_num_labels=5,
        val_split=0.4,
        seed=0,
        pool_batch_size=64,
    )
    assert datamodule.num_classes == 2 and datamodule.classes == ["ants", "bees"]
    # the pool is served with the deterministic evaluation transforms
    first = next(iter(datamodule.pool_dataloader()))[0]
    torch.testing.assert_close(first, next(iter(datamodule.pool_dataloader()))[0])

    head = torch.nn.Sequential(torch.nn.Dropout(p=0.1), torch.nn.Linear(512, datamodule.num_classes))
    model = ImageClassifier(backbone="resnet18", head=head, num_classes=datamodule.num_classes, pretrained=False)
    trainer = quiet_trainer(max_epochs=2, default_root_dir=tmp_path, limit_train_batches=2)
    loop = ActiveLearningLoop(label_epoch_frequency=1)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.finetune(model, datamodule=datamodule, strategy="freeze")

    assert len(loop.history) == 2 and [len(r.indices_added) for r in loop.history] == [1, 0]
    assert len(results) == 1 and results[0].feature_cache  # frozen backbone once, dropout head twice
    assert results[0].scores.shape == (245 - 5,) and results[0].scores.std() > 0
    prediction = model.predict(str(next((DATA / "val" / "bees").iterdir())))
    assert prediction in ("ants", "bees")
