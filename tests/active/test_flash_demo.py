"""Lightning Flash's hymenoptera demo, exactly as README.md shows it (Flash's code with alkit imports), on the real
images. Skipped when ../shared/data/hymenoptera_data is absent."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data" / "hymenoptera_data"


def flash_demo_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"tests/active/test_flash_demo.py runs this exact block.*?```python\n(.*?)```", readme, re.S)
    assert match, "README.md lost the Flash demo block"
    return match.group(1)


def test_readme_block_is_flash_demo_with_alkit_imports():
    code = flash_demo_block()
    assert "from alkit.active import ActiveLearningDataModule, ActiveLearningLoop" in code
    assert 'trainer.finetune(model, datamodule=datamodule, strategy="freeze")' in code


@pytest.mark.skipif(not (DATA / "train").is_dir(), reason="shared/data/hymenoptera_data is not available")
def test_flash_demo_runs_with_alkit_imports(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hymenoptera_data").symlink_to(DATA)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no ResNet weights can be downloaded here: random init, with a warning
        exec(compile(flash_demo_block(), "README.md", "exec"), namespace)

    datamodule, loop, model = namespace["datamodule"], namespace["active_learning_loop"], namespace["model"]
    assert namespace["predictions"] in ("ants", "bees")
    assert (tmp_path / "image_classification_model.pt").is_file()
    # 3 rounds (max_epochs), one label per round between them, none after the last (Flash scored and reset anyway)
    assert [len(r.indices_added) for r in loop.history] == [1, 1, 0]
    assert len(datamodule.train_indices) + len(datamodule.val_indices) == 5 + 2
    assert not set(datamodule.val_indices) & set(datamodule.train_indices)
    # the model holds the weights trained on the final labelled set (Flash returned the initial ones)
    initial_head = loop._initial_weights["head.1.weight"]
    assert not torch.equal(model.state_dict()["head.1.weight"].cpu(), initial_head)
    assert loop.history[-1].num_labelled == len(datamodule.train_indices)
