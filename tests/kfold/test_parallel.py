"""kfold_fit(parallel=N): folds in spawned processes give the sequential run's numbers, and a resume reuses them."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import alkit
from alkit.kfold import KFoldResult, kfold_fit
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier

EPOCHS = 2


def _run(tmp_path, folder, model=None, **kwargs):
    return kfold_fit(
        model or Classifier(),
        BlobDataWithTest(),
        k=3,
        seed=3,
        max_epochs=EPOCHS,
        export_path=tmp_path / folder,
        **{**QUIET, "default_root_dir": tmp_path, **kwargs},
    )


def _assert_same_result(actual: KFoldResult, expected: KFoldResult) -> None:
    assert actual.num_folds == expected.num_folds
    for got, want in zip(actual.val_metrics + actual.test_metrics, expected.val_metrics + expected.test_metrics):
        assert got.keys() == want.keys()
        for name in want:  # same seeds, same arithmetic: a different seed moves a loss by far more than this
            assert got[name] == pytest.approx(want[name], rel=1e-6, abs=1e-7), name
    for got, want in zip(actual.val_indices, expected.val_indices):
        assert got.tolist() == want.tolist()
    np.testing.assert_allclose(actual.oof_predictions, expected.oof_predictions, rtol=1e-6, atol=1e-7)
    assert actual.oof_predictions.shape == (60, 3)  # every training sample, class probabilities
    assert actual.ensemble_metrics.keys() == expected.ensemble_metrics.keys()
    for name, value in expected.ensemble_metrics.items():
        assert actual.ensemble_metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-7)


def test_parallel_folds_equal_the_sequential_run_and_a_resume_recomputes_only_unfinished_folds(tmp_path):
    torch.manual_seed(0)
    model = Classifier()  # kfold_fit leaves it as given: every run below starts from these weights
    sequential = _run(tmp_path, "sequential", model)
    parallel = _run(tmp_path, "parallel", model, parallel=2)
    _assert_same_result(parallel, sequential)
    folder = tmp_path / "parallel"
    assert parallel.checkpoint_paths == [str(folder / f"fold_{i}.ckpt") for i in range(3)]
    _assert_same_result(KFoldResult.from_json(folder / "kfold_result.json"), sequential)

    # a run killed while fold 1 was training: its record (written after its checkpoint) is missing
    (folder / "fold_1.json").unlink()
    (folder / "fold_1.ckpt").unlink()
    (folder / "fold_1.oof.npz").unlink()
    (folder / "kfold_result.json").unlink()
    finished = {i: (folder / f"fold_{i}.ckpt").stat().st_mtime_ns for i in (0, 2)}
    resumed = _run(tmp_path, "parallel", model, parallel=2, ckpt_path=folder)
    _assert_same_result(resumed, sequential)
    assert {i: (folder / f"fold_{i}.ckpt").stat().st_mtime_ns for i in (0, 2)} == finished  # not recomputed
    assert all((folder / name).is_file() for name in ("fold_1.ckpt", "fold_1.oof.npz", "fold_1.json"))
    assert json.loads((folder / "fold_1.json").read_text())["fold"] == 1

    # a resume with other folds (another seed) is refused rather than mixing two runs' folds
    with pytest.raises(RuntimeError, match="seed=3.*seed=4|fingerprint"):
        kfold_fit(Classifier(), BlobDataWithTest(), k=3, seed=4, parallel=2, ckpt_path=folder, **QUIET)
    # a fold process's checkpoint holds that fold only: the sequential resume refuses it
    with pytest.raises(ValueError, match=r"parallel=N, ckpt_path=<its run folder>"):
        _run(tmp_path, "sequential", ckpt_path=folder / "fold_1.ckpt")


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_parallel_values_are_refused_before_any_work(tmp_path, value):
    with pytest.raises(ValueError, match=rf"parallel={value!r} is invalid: expected None .* or an int >= 1"):
        _run(tmp_path, "run", parallel=value)
    assert not (tmp_path / "run").exists()


def test_parallel_refuses_a_trainer_and_unpicklable_arguments_naming_them(tmp_path):
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    with pytest.raises(TypeError, match=r"trainer=Trainer cannot be combined with parallel=2"):
        kfold_fit(Classifier(), BlobDataWithTest(), k=3, trainer=trainer, parallel=2)

    model = Classifier()
    model.transform = lambda x: x  # a lambda cannot be pickled into a spawned process
    with pytest.raises(TypeError, match=r"model=Classifier cannot be sent to the fold processes .* picklable"):
        kfold_fit(model, BlobDataWithTest(), k=3, parallel=2, default_root_dir=tmp_path, **QUIET)
    assert not (tmp_path / "kfold").exists()


def test_each_fold_process_gets_its_own_gpu_and_its_own_logger_version(tmp_path, monkeypatch):
    from alkit.kfold import parallel

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(parallel, "_SLOT", 5)  # the pool's sixth process
    kwargs = parallel._worker_trainer_kwargs({"accelerator": "gpu", "default_root_dir": tmp_path}, fold=3)
    assert kwargs["devices"] == [1]
    assert parallel._worker_trainer_kwargs({"accelerator": "gpu", "devices": [2]}, fold=3)["devices"] == [2]
    assert "devices" not in parallel._worker_trainer_kwargs({"accelerator": "cpu", "logger": False}, fold=3)
    versions = {
        parallel._worker_trainer_kwargs({"default_root_dir": tmp_path}, fold=f)["logger"].version for f in (0, 1)
    }
    assert len(versions) == 2  # two fold processes never race for one logger version


@pytest.mark.parametrize("backend", ["threads", "Ray", None, 1])
def test_bad_parallel_backends_are_refused_before_any_work(tmp_path, backend):
    with pytest.raises(ValueError, match=rf"parallel_backend={backend!r} is invalid: expected 'processes' .* 'ray'"):
        _run(tmp_path, "run", parallel=2, parallel_backend=backend)
    assert not (tmp_path / "run").exists()


def test_ray_needs_parallel_and_a_missing_ray_is_named_with_its_install_command(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"parallel_backend='ray' needs parallel=N"):
        _run(tmp_path, "run", parallel_backend="ray")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"parallel_backend='ray' needs Ray.*pip install alkit\[ray\]"):
        _run(tmp_path, "run", parallel=2, parallel_backend="ray")
    assert not (tmp_path / "run").exists()


def test_ray_refuses_devices_it_cannot_honour(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install alkit[ray]); CI does not install it")
    with pytest.raises(ValueError, match=r"devices=\[0, 1\] cannot be combined with parallel_backend='ray'"):
        _run(tmp_path, "run", parallel=2, parallel_backend="ray", devices=[0, 1])
    assert not (tmp_path / "run").exists()


def test_ray_folds_equal_the_sequential_run_and_a_resume_recomputes_only_unfinished_folds(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install alkit[ray]); CI does not install it")
    torch.manual_seed(0)
    model = Classifier()
    sequential = _run(tmp_path, "sequential", model)
    # a local two-CPU cluster; its workers import this test's model and data classes from the repository
    root = str(Path(__file__).resolve().parents[2])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": root}})
    try:
        parallel = _run(tmp_path, "ray", model, parallel=2, parallel_backend="ray")
        _assert_same_result(parallel, sequential)
        folder = tmp_path / "ray"
        assert parallel.checkpoint_paths == [str(folder / f"fold_{i}.ckpt") for i in range(3)]
        _assert_same_result(KFoldResult.from_json(folder / "kfold_result.json"), sequential)

        for name in ("fold_1.json", "fold_1.ckpt", "fold_1.oof.npz", "kfold_result.json"):  # killed during fold 1
            (folder / name).unlink()
        finished = {i: (folder / f"fold_{i}.ckpt").stat().st_mtime_ns for i in (0, 2)}
        resumed = _run(tmp_path, "ray", model, parallel=2, parallel_backend="ray", ckpt_path=folder)
        _assert_same_result(resumed, sequential)
        assert {i: (folder / f"fold_{i}.ckpt").stat().st_mtime_ns for i in (0, 2)} == finished  # not recomputed
        assert ray.is_initialized()  # the caller's cluster is left running
    finally:
        ray.shutdown()
