"""kfold_fit under ddp_spawn with 2 CPU processes: identical folds on both ranks, reduced metrics, result returned.

Kept tiny (2 folds, 1 epoch, a few batches) so it runs in the normal suite in a few seconds.
"""

import json

import numpy as np
import pytest
import torch.distributed

from alkit.kfold import kfold_fit
from alkit.lightning import pl
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier

Callback = pl.callbacks.Callback

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


class _PerRankReport(Callback):
    """Each process writes what it saw, so the test (in the main process) can compare the ranks."""

    def __init__(self, folder):
        self.folder = str(folder)

    def on_fit_end(self, trainer, pl_module):
        loop = trainer.fit_loop
        report = {
            "fingerprint": trainer.datamodule.folds_fingerprint(),
            "val_indices": [f.val_indices.tolist() for f in trainer.datamodule.folds],
            "val_metrics": loop.result.val_metrics,
            "test_metrics": loop.result.test_metrics,
            "ensemble": loop.result.ensemble_metrics,
            "oof": loop.result.oof_predictions.tolist(),
        }
        with open(f"{self.folder}/rank_{trainer.global_rank}.json", "w") as handle:
            json.dump(report, handle)


def test_kfold_fit_under_ddp_spawn_with_two_cpu_processes(tmp_path):
    result = kfold_fit(
        Classifier(),
        BlobDataWithTest(n=48, n_test=16, batch_size=8),
        k=2,
        seed=0,
        max_epochs=1,
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        callbacks=[_PerRankReport(tmp_path)],
        default_root_dir=tmp_path,
        **QUIET,
    )
    ranks = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    assert ranks[0]["val_indices"] == ranks[1]["val_indices"]
    # each rank validated half of the held-out fold; the reported metrics are the reduced ones, equal on both ranks
    assert ranks[0]["val_metrics"] == ranks[1]["val_metrics"]
    assert ranks[0]["test_metrics"] == ranks[1]["test_metrics"]
    assert ranks[0]["ensemble"] == ranks[1]["ensemble"]
    # the main process gets the same result back
    assert result.num_folds == 2
    assert result.val_metrics == ranks[0]["val_metrics"]
    assert result.ensemble_metrics == ranks[0]["ensemble"]
    assert [v.tolist() for v in result.val_indices] == ranks[0]["val_indices"]
    # every rank predicted every held-out sample (not its shard): one complete set of out-of-fold predictions
    assert ranks[0]["oof"] == ranks[1]["oof"] == result.oof_predictions.tolist()
    assert result.oof_predictions.shape == (48, 3) and not np.isnan(result.oof_predictions).any()
