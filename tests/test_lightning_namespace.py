"""alkit runs on either Lightning namespace, one per process, and says clearly when code mixes them."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit.lightning import NAMESPACE, pl

ROOT = Path(__file__).resolve().parents[1]
OTHER = "pytorch_lightning" if NAMESPACE == "lightning" else "lightning.pytorch"
needs_other = pytest.mark.skipif(
    importlib.util.find_spec(OTHER.split(".")[0]) is None, reason=f"{OTHER} is not installed"
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ALKIT_LIGHTNING"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300
    )


def _other_module_class():
    other = importlib.import_module(OTHER)

    class ForeignModel(other.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

    return ForeignModel, other


@needs_other
def test_a_model_of_the_other_namespace_is_a_clear_error_that_says_how_to_switch():
    foreign_model, _ = _other_module_class()
    trainer = alkit.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(TypeError, match="ALKIT_LIGHTNING") as error:
        trainer.fit(foreign_model(), DataLoader(TensorDataset(torch.zeros(2, 2))))
    assert OTHER in str(error.value) and pl.__name__ in str(error.value)


@needs_other
def test_kfold_fit_and_trainer_callbacks_of_the_other_namespace_are_refused_before_any_work(tmp_path):
    foreign_model, other = _other_module_class()
    with pytest.raises(TypeError, match="`model` is a ForeignModel"):
        alkit.kfold_fit(foreign_model(), pl.LightningDataModule(), k=2, default_root_dir=tmp_path)
    with pytest.raises(TypeError, match="`callbacks` is a ModelCheckpoint"):
        alkit.Trainer(callbacks=[other.callbacks.ModelCheckpoint(dirpath=tmp_path)])
    assert not any(tmp_path.iterdir())


def test_the_namespace_follows_the_environment_variable():
    for name, module in (("lightning", "lightning.pytorch"), ("pytorch_lightning", "pytorch_lightning")):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        done = _run("import alkit.lightning as l; print(l.NAMESPACE, l.pl.__name__)", ALKIT_LIGHTNING=name)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [name, module]


def test_an_unknown_namespace_is_refused_naming_the_accepted_values():
    done = _run("import alkit.lightning", ALKIT_LIGHTNING="lightnin")
    assert done.returncode != 0
    assert "ALKIT_LIGHTNING='lightnin'" in done.stderr and "['lightning', 'pytorch_lightning']" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="lightning is not installed")
def test_importing_lightning_first_binds_alkit_to_it_and_a_lightning_model_trains():
    code = (
        "import lightning as L, torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "import alkit\n"
        "class Model(L.LightningModule):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.layer = torch.nn.Linear(2, 2)\n"
        "    def training_step(self, batch, batch_idx):\n"
        "        return self.layer(batch[0]).sum()\n"
        "    def configure_optimizers(self):\n"
        "        return torch.optim.SGD(self.parameters(), lr=0.1)\n"
        "trainer = alkit.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)\n"
        "trainer.fit(Model(), DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2))\n"
        "import alkit.lightning\n"
        "print(alkit.lightning.NAMESPACE, trainer.global_step, isinstance(trainer, L.Trainer))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["lightning", "4", "True"]


def _lightning_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [n for n in names if n.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric")]
    return found


def test_only_the_namespace_module_and_the_seam_import_lightning():
    # Lightning's private loop internals change between minors; keeping every access in alkit/_seam.py (checked at
    # import) makes a rename fail loudly at `import alkit` instead of mid-training.
    offenders = {}
    for path in sorted((ROOT / "alkit").rglob("*.py")):
        if path.name in ("lightning.py", "_seam.py") and path.parent == ROOT / "alkit":
            continue
        imports = _lightning_imports(path)
        if imports:
            offenders[str(path.relative_to(ROOT))] = imports
    assert offenders == {}


def test_private_lightning_names_are_used_only_through_the_seam():
    # `_seam.<name>` and names imported from alkit._seam are the sanctioned route; a direct `call._call_...` or a
    # `trainer._logger_connector` anywhere else would bypass the import-time check.
    patterns = ("._call_", "_logger_connector", "_lightning_optimizers", "_on_before_batch_transfer", "fetcher._batch")
    offenders = []
    for path in sorted((ROOT / "alkit").rglob("*.py")):
        if path == ROOT / "alkit" / "_seam.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {p}" for p in patterns if p in text]
    assert offenders == []


def test_a_missing_private_name_fails_at_import_naming_the_lightning_version():
    code = (
        "import importlib, alkit.lightning as l\n"
        "m = importlib.import_module(l.pl.__name__ + '.loops.fit_loop')\n"
        "del m._FitLoop\n"
        "import alkit._seam\n"
    )
    done = _run(code)
    assert done.returncode != 0
    assert "_FitLoop" in done.stderr and pl.__version__ in done.stderr and "LightningInternalsChanged" in done.stderr
