"""Per-round pool scores: compressed, written atomically, read back without executing anything from the file."""

from __future__ import annotations

import numpy as np
import pytest

import alkit.active.history as history_module
from alkit.active import ActiveLearningHistory, RoundRecord, RoundScores
from alkit.active.history import load_round_scores, save_round_scores


def example(n: int = 1000) -> RoundScores:
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(5 * n, size=n, replace=False))
    return RoundScores(indices, np.zeros(n), indices[[3, 1, 2]], np.full(n, 0.5))


def test_round_scores_round_trip_exactly_and_compressed(tmp_path):
    scores = example()
    path = save_round_scores(tmp_path / "s" / "round_0000.npz", scores)
    loaded = load_round_scores(path)
    for name in RoundScores._fields:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(scores, name))
    raw = sum(np.asarray(a).nbytes for a in scores)
    assert path.stat().st_size < raw / 2  # constant columns compress: np.savez_compressed, not np.savez
    assert [p.name for p in path.parent.iterdir()] == ["round_0000.npz"]  # no temporary file left behind


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = save_round_scores(tmp_path / "round_0000.npz", example())

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(history_module.np, "savez_compressed", dies)
    with pytest.raises(KeyboardInterrupt):
        save_round_scores(path, example(10))
    assert len(load_round_scores(path).indices) == 1000
    assert [p.name for p in tmp_path.iterdir()] == ["round_0000.npz"]


def test_a_file_holding_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "round_0000.npz"
    np.savez(path, indices=np.array([object()], dtype=object), scores=np.zeros(1), selected=np.zeros(0))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_round_scores(path)


def test_history_scores_needs_a_folder_and_a_scored_round(tmp_path):
    history = ActiveLearningHistory([RoundRecord(0, 4, [1], scores_file="s/round_0000.npz"), RoundRecord(1, 5)])
    with pytest.raises(ValueError, match="neither saved nor loaded"):
        history.scores(0)
    save_round_scores(tmp_path / "s" / "round_0000.npz", example())
    history.save(tmp_path)
    assert len(history.scores(0).indices) == 1000
    with pytest.raises(ValueError, match=r"Round 1 did not score the pool.*\[0\]"):
        history.scores(1)
    with pytest.raises(ValueError, match="round=7"):
        history.scores(7)
