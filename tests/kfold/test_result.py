"""KFoldResult: per-fold numbers, their aggregates and exports are what was recorded."""

import json
import sys

import matplotlib
import numpy as np
import pytest
from scipy import stats

from alkit.kfold import KFoldResult

matplotlib.use("Agg")


def _result(with_ensemble=True):
    return KFoldResult(
        val_metrics=[{"val_acc": 0.9, "val_loss": 0.3}, {"val_acc": 0.7, "val_loss": 0.5}, {"val_acc": 0.8}],
        test_metrics=[{"test_acc": 0.85}, {"test_acc": 0.75}, {"test_acc": 0.8}],
        train_indices=[[2, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 3]],
        val_indices=[[0, 1], [2, 3], [4, 5]],
        checkpoint_paths=["f0.ckpt", "f1.ckpt", None],
        ensemble_metrics={"test_acc": 0.9, "test_loss": 0.2} if with_ensemble else None,
    )


def test_mean_and_std_are_over_folds_and_ignore_folds_without_the_metric():
    result = _result()
    assert result.mean("val_acc") == pytest.approx(0.8)
    assert result.std("val_acc") == pytest.approx(np.std([0.9, 0.7, 0.8]))
    assert result.mean("val_loss") == pytest.approx(0.4)
    assert result.mean() == pytest.approx({"val_acc": 0.8, "val_loss": 0.4, "test_acc": 0.8})
    np.testing.assert_allclose(result.metrics["test_acc"], [0.85, 0.75, 0.8])
    with pytest.raises(KeyError, match=r"metric='acc' was not logged by any fold; accepted: \['test_acc'"):
        result.mean("acc")


def test_sizes_and_indices_are_kept_per_fold():
    result = _result()
    assert result.num_folds == 3
    assert result.fold_sizes == [(4, 2)] * 3
    np.testing.assert_array_equal(result.val_indices[1], [2, 3])


def test_a_name_logged_in_validation_and_test_is_kept_twice():
    result = KFoldResult(val_metrics=[{"acc": 0.5}], test_metrics=[{"acc": 0.6}])
    assert result.fold_metrics(0) == {"val/acc": 0.5, "test/acc": 0.6}


def test_str_is_a_table_with_every_fold_mean_std_and_ensemble():
    text = str(_result())
    lines = text.splitlines()
    assert lines[0] == "KFoldResult (3 folds)"
    assert lines[1].split() == ["fold", "n_train", "n_val", "val_acc", "val_loss", "test_acc"]
    assert lines[2].split() == ["0", "4", "2", "0.9000", "0.3000", "0.8500"]
    assert lines[4].split() == ["2", "4", "2", "0.8000", "-", "0.8000"]
    assert lines[5].split()[:2] == ["mean", "0.8000"]
    # mean ± the Student-t half width: t(0.975, df=2) · s / √3, with s = 0.1 (val_acc) and 0.05 (test_acc)
    half_width = stats.t.ppf(0.975, df=2) / np.sqrt(3)
    assert lines[6].split() == ["95%", "CI", "±", f"{0.1 * half_width:.4f}", "1.2706", f"{0.05 * half_width:.4f}"]
    assert lines[7].split()[0] == "std"
    assert lines[8].split() == ["ensemble", "-", "-", "0.9000"]
    assert "test_loss=0.2000" in lines[9]


def test_json_round_trip_is_exact_and_written_atomically(tmp_path):
    result = _result()
    path = result.to_json(tmp_path / "sub" / "result.json")
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp file left behind
    data = json.loads(path.read_text())
    assert data["fold_sizes"] == [[4, 2]] * 3
    assert data["mean"]["val_acc"] == pytest.approx(0.8)
    again = KFoldResult.from_json(path)
    assert again.to_dict() == result.to_dict()


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = _result().to_json(tmp_path / "result.json")
    before = path.read_text()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("alkit.kfold.result.os.replace", explode)
    with pytest.raises(OSError, match="disk full"):
        _result(with_ensemble=False).to_json(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_to_dataframe_has_one_row_per_fold():
    frame = _result().to_dataframe()
    assert list(frame.index) == [0, 1, 2]
    assert frame.loc[1, "val_acc"] == pytest.approx(0.7)
    assert frame.loc[2, "n_train"] == 4
    assert frame.loc[0, "checkpoint"] == "f0.ckpt"


def test_to_dataframe_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas, which is not installed"):
        _result().to_dataframe()


def test_plot_draws_one_bar_per_fold_with_mean_and_ensemble():
    fig = _result().plot(["val_acc", "test_acc"])
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["val_acc", "test_acc"]
    heights = [p.get_height() for p in axes[1].patches if p.get_width() < 1]
    assert heights == pytest.approx([0.85, 0.75, 0.8])
    labels = axes[1].get_legend_handles_labels()[1]
    assert labels[0].startswith("mean 0.8") and "ensemble" in labels
    with pytest.raises(KeyError, match="were not logged"):
        _result().plot("nope")


def test_per_fold_fields_of_different_lengths_are_rejected():
    with pytest.raises(ValueError, match="different lengths"):
        KFoldResult(val_metrics=[{"a": 1.0}], test_metrics=[{"b": 1.0}, {"b": 2.0}])
