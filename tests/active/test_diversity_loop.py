"""Diversity strategies in the datamodule and the loop: labels per round, per-round scores, resume, cold start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from alkit.active import ActiveLearningDataModule, ActiveLearningHistory, EmbeddingProtocolError
from alkit.active.loop import RESUME_CHECKPOINT, ActiveLearningLoop
from alkit.lightning import pl
from tests.active.synthetic import NoisyDataset, TinyData
from tests.active.test_diversity import grid_blobs
from tests.active.test_loop import TinyClassifier, comparable, make_data, run
from tests.interrupt import KillAtEpoch, Killed


def test_a_coreset_run_labels_query_size_per_round_and_saves_every_scored_pool(tmp_path):
    out = tmp_path / "out"
    _, loop, _, dm = run(tmp_path, rounds=3, datamodule=make_data(heuristic="coreset"), export_path=out)
    assert [r.num_labelled for r in loop.history] == [4, 6, 8]  # 6 initial labels (2 for validation), +2 a round
    assert [len(r.indices_added) for r in loop.history] == [2, 2, 0]
    labelled_before = set(dm.labelled_indices.tolist()) - {i for r in loop.history for i in r.indices_added}
    for record in loop.history[:2]:
        saved = loop.history.scores(record.round)
        assert saved.selected.tolist() == record.indices_added  # in the order CoreSet picked them
        assert len(saved.indices) == 30 - len(labelled_before)  # the whole pool of that round
        assert not set(saved.indices.tolist()) & labelled_before
        assert saved.scores.shape == saved.indices.shape and saved.uncertainty.shape == saved.indices.shape
        first = saved.indices[np.argmax(saved.scores)]  # farthest from the labelled set
        assert saved.selected[0] == first
        labelled_before |= set(record.indices_added)
    with pytest.raises(ValueError, match="did not score the pool"):
        loop.history.scores(2)
    reloaded = ActiveLearningHistory.load(out / "active_learning_history.json")
    np.testing.assert_array_equal(reloaded.scores(1).scores, loop.history.scores(1).scores)
    assert ActiveLearningHistory.load(out / "active_learning_history.csv") == reloaded


def test_an_uncertainty_heuristic_round_stores_its_scores_and_ranking(tmp_path):
    _, loop, _, _ = run(tmp_path, rounds=2, datamodule=make_data(heuristic="entropy"), export_path=tmp_path)
    saved = loop.history.scores(0)
    top = saved.indices[np.argsort(-saved.scores, kind="stable")[:2]]
    assert sorted(saved.selected.tolist()) == sorted(top.tolist()) and saved.uncertainty is None


@pytest.mark.parametrize("strategy", ["badge", "bald_coreset"])
def test_a_resumed_diversity_run_ends_like_an_uninterrupted_one(tmp_path, strategy):
    common = dict(rounds=3, epochs=2, seed=3)
    _, reference_loop, reference_model, reference_dm = run(
        tmp_path / "ref", datamodule=make_data(heuristic=strategy), **common
    )
    with pytest.raises(Killed):
        run(tmp_path / "run", datamodule=make_data(heuristic=strategy), callbacks=[KillAtEpoch(2)], **common)
    _, loop, model, dm = run(
        tmp_path / "run",
        datamodule=make_data(heuristic=strategy),
        ckpt_path=tmp_path / "run" / RESUME_CHECKPOINT,
        **common,
    )
    assert dm.labelled_indices.tolist() == reference_dm.labelled_indices.tolist()
    assert comparable(loop.history) == comparable(reference_loop.history)
    np.testing.assert_array_equal(loop.history.scores(1).scores, reference_loop.history.scores(1).scores)
    for name, value in reference_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_rows_sharded_round_robin_are_gathered_back_in_pool_order():
    """Under DDP each rank scores rows r, r + W, ...; embeddings and probabilities come back whole, in pool order."""
    pool = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)  # 7 rows of 3-D embeddings, 2 ranks: 4 + 3 rows
    shards = [pool[0::2], pool[1::2]]

    def all_gather(padded: torch.Tensor) -> torch.Tensor:
        other = torch.full_like(padded, float("nan"))
        other[:3] = torch.as_tensor(shards[1], dtype=padded.dtype)
        return torch.stack([padded, other])

    strategy = SimpleNamespace(root_device=torch.device("cpu"), all_gather=all_gather)
    fake_loop = SimpleNamespace(trainer=SimpleNamespace(world_size=2, strategy=strategy))
    gathered = ActiveLearningLoop._gather_rows(fake_loop, shards[0], 7)
    np.testing.assert_array_equal(gathered, pool)
    assert gathered.dtype == np.float32


class NoLinearClassifier(TinyClassifier):
    """A classifier with no torch.nn.Linear and no embed(): it cannot give embeddings."""

    def __init__(self) -> None:
        pl.LightningModule.__init__(self)
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_a_model_without_embeddings_is_refused_before_training(tmp_path):
    dm = make_data(heuristic="coreset")
    labelled = dm.labelled_indices.tolist()
    with pytest.raises(EmbeddingProtocolError, match=r"embed\(x\)"):
        run(tmp_path, datamodule=dm, model=NoLinearClassifier())
    assert dm.labelled_indices.tolist() == labelled


def blob_data() -> tuple[TinyData, np.ndarray]:
    points, middles = grid_blobs([(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)])
    data = TinyData(n=len(points), num_classes=3, features=2)
    data.x = torch.as_tensor(points, dtype=torch.float32)
    data.y = torch.arange(len(points)) // 25
    data.train_dataset = NoisyDataset(data.x, data.y)
    return data, middles


@pytest.mark.parametrize("with_model", [False, True], ids=["inputs", "model-embeddings"])
def test_typiclust_cold_start_labels_the_centre_of_each_blob(with_model):
    data, middles = blob_data()
    model: Any = None
    if with_model:
        model = nn.Linear(2, 3)  # its input is the embedding: the raw point
    dm = ActiveLearningDataModule(
        data, initial_num_labels=3, initial_strategy="typiclust", initial_embedding_model=model, seed=0
    )
    assert dm.labelled_indices.tolist() == sorted(middles.tolist())
    random_start = ActiveLearningDataModule(data, initial_num_labels=3, seed=0)
    assert random_start.labelled_indices.tolist() != dm.labelled_indices.tolist()


def test_an_unknown_initial_strategy_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"initial_strategy='kmeans'.*'random', 'typiclust'"):
        ActiveLearningDataModule(TinyData(), initial_num_labels=3, initial_strategy="kmeans")


def test_select_without_embeddings_names_what_is_missing():
    dm = make_data(heuristic="coreset")
    with pytest.raises(ValueError, match="embeddings"):
        dm.query(np.zeros(len(dm.current_pool_indices)))


def test_typiclust_cold_start_leaves_out_the_clusters_already_labelled():
    data, middles = blob_data()
    given = np.zeros(len(data.x), dtype=int)
    given[middles[0]] = 1  # the first blob is covered from the start
    dm = ActiveLearningDataModule(
        data, map_dataset_to_labelled=lambda dataset: given, initial_num_labels=2, initial_strategy="typiclust", seed=0
    )
    assert dm.labelled_indices.tolist() == sorted(middles.tolist())
