"""Per-round history: atomic CSV/JSON files that load back, checkpoint state, label-efficiency plots."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from alkit.active import ActiveLearningHistory, RoundRecord, plot_label_efficiency

matplotlib.use("Agg")


def history(offset: float = 0.0) -> ActiveLearningHistory:
    h = ActiveLearningHistory()
    h.append(RoundRecord(0, 5, [7, 3], {"train_loss": 1.2, "val_acc": 0.5, "test_acc": 0.4 + offset}, 1.5, 0.25))
    h.append(RoundRecord(1, 7, [11], {"train_loss": 0.8, "test_acc": 0.6 + offset}, 1.25, 0.5))
    h.append(RoundRecord(2, 8, [], {"train_loss": 0.5, "test_acc": 0.7 + offset}, 1.0, 0.0))
    return h


def test_save_and_load_round_trip(tmp_path):
    original = history()
    csv_path, json_path = original.save(tmp_path / "logs")
    assert ActiveLearningHistory.load(json_path) == original
    assert ActiveLearningHistory.load(csv_path) == original
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:6] == ["round", "num_labelled", "num_added", "indices_added", "train_time_s", "scoring_time_s"]
    assert {"train_loss", "val_acc", "test_acc"} <= set(header)
    assert not [p for p in os.listdir(tmp_path / "logs") if p.endswith(".tmp")]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    original = history()
    _, json_path = original.save(tmp_path)
    bigger = history()
    bigger.append(RoundRecord(3, 9, [1], {"test_acc": 0.9}))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        bigger.save(tmp_path)
    monkeypatch.undo()
    assert ActiveLearningHistory.load(json_path) == original
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_state_dict_is_plain_and_restores(tmp_path):
    original = history()
    torch.save(original.state_dict(), tmp_path / "h.pt")
    restored = ActiveLearningHistory()
    restored.load_state_dict(torch.load(tmp_path / "h.pt", weights_only=True))
    assert restored == original


def test_curve_and_plot(tmp_path):
    h = history()
    assert h.curve("test_acc") == ([5, 7, 8], [0.4, 0.6, 0.7])
    assert h.curve("val_acc") == ([5], [0.5])
    ax = plot_label_efficiency(h, "test_acc")
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [5, 7, 8] and list(line.get_ydata()) == [0.4, 0.6, 0.7]
    assert ax.get_xlabel() == "labelled samples" and ax.get_ylabel() == "test_acc"
    ax.figure.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_plot_compares_several_histories_and_reads_files(tmp_path):
    _, json_path = history(0.1).save(tmp_path)
    ax = plot_label_efficiency({"bald": history(0.1), "random": history(), "from file": json_path})
    assert [line.get_label() for line in ax.get_lines()] == ["bald", "random", "from file"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bald", "random", "from file"]
    ax2 = plot_label_efficiency([history(), history(0.2)], label=["a", "b"])
    assert list(ax2.get_lines()[1].get_ydata()) == pytest.approx([0.6, 0.8, 0.9])


def test_unknown_metric_lists_logged_metrics():
    with pytest.raises(ValueError, match="'test_f1'.*test_acc"):
        plot_label_efficiency(history(), "test_f1")
