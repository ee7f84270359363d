"""Progress trackers sit where Lightning 1.x code reads them, while checkpoints keep Lightning 2's layout.

The paths are those of Lightning 1.9's loop state (``tests_pytorch/loops/test_loop_state_dict.py``): the evaluation
and prediction loops count dataloaders (``dataloader_progress``) and their epoch loops count batches
(``epoch_loop.batch_progress``). The epoch loops' counters are a per-dataloader view of the outer loop's, which
Lightning 2 reads and saves.
"""

from __future__ import annotations

import copy
import pickle
from functools import reduce

import pytest

import alkit
from alkit import loops
from alkit.lightning import pl
from alkit.loops.progress import DataLoaderBatchProgress, DataLoaderProgress, DataLoaderStepProgress
from tests.quiet import QUIET

READY_COMPLETED = {"ready": 0, "completed": 0}
PROCESSED = {"ready": 0, "started": 0, "processed": 0, "completed": 0}

#: Lightning 1.9's tracker paths (relative to the trainer) and their initial state
LIGHTNING_1_PATHS = {
    "fit_loop.epoch_progress": (loops.Progress, {"total": PROCESSED, "current": PROCESSED}),
    "fit_loop.epoch_loop.batch_progress": (
        loops.BatchProgress,
        {"total": PROCESSED, "current": PROCESSED, "is_last_batch": False},
    ),
    "fit_loop.epoch_loop.scheduler_progress": (loops.SchedulerProgress, None),
    "fit_loop.epoch_loop.batch_loop.manual_loop.optim_step_progress": (loops.Progress, None),
    "fit_loop.epoch_loop.batch_loop.optimizer_loop.optim_progress": (loops.OptimizationProgress, None),
    "fit_loop.epoch_loop.val_loop.dataloader_progress": (
        DataLoaderProgress,
        {"total": READY_COMPLETED, "current": READY_COMPLETED},
    ),
    "fit_loop.epoch_loop.val_loop.epoch_loop.batch_progress": (
        loops.BatchProgress,
        {"total": PROCESSED, "current": PROCESSED, "is_last_batch": False},
    ),
    **{
        f"{name}.{path}": expected
        for name in ("validate_loop", "test_loop")
        for path, expected in {
            "dataloader_progress": (DataLoaderProgress, {"total": READY_COMPLETED, "current": READY_COMPLETED}),
            "epoch_loop.batch_progress": (
                loops.BatchProgress,
                {"total": PROCESSED, "current": PROCESSED, "is_last_batch": False},
            ),
        }.items()
    },
    "predict_loop.dataloader_progress": (DataLoaderProgress, {"total": READY_COMPLETED, "current": READY_COMPLETED}),
    "predict_loop.epoch_loop.batch_progress": (loops.Progress, {"total": PROCESSED, "current": PROCESSED}),
}


def resolve(trainer, path: str):
    return reduce(getattr, path.split("."), trainer)


@pytest.mark.parametrize("path", list(LIGHTNING_1_PATHS))
def test_progress_trackers_sit_at_their_lightning_1_paths(path):
    trainer = alkit.Trainer(**QUIET)
    tracker = resolve(trainer, path)
    cls, state = LIGHTNING_1_PATHS[path]
    assert isinstance(tracker, cls)
    if state is not None:
        assert tracker.state_dict() == state


@pytest.mark.parametrize("name", ["validate_loop", "test_loop", "predict_loop"])
def test_checkpoint_layout_stays_lightning_2s(name):
    """The 1.x trackers are not saved: a checkpoint has exactly Lightning 2's entries (plus empty loop states)."""
    lightning = getattr(pl.Trainer(**QUIET), name).state_dict()
    ours = getattr(alkit.Trainer(**QUIET), name).state_dict()
    assert set(ours) == set(lightning) | {"epoch_loop.state_dict"}
    assert ours["epoch_loop.state_dict"] == {}
    assert all(ours[key] == value for key, value in lightning.items())


def test_fit_checkpoint_layout_stays_lightning_2s():
    lightning = pl.Trainer(**QUIET).fit_loop.state_dict()
    ours = alkit.Trainer(**QUIET).fit_loop.state_dict()
    assert "epoch_loop.val_loop.batch_progress" in ours
    assert not any("dataloader_progress" in key or "val_loop.epoch_loop.batch_progress" in key for key in ours)
    extra = set(ours) - set(lightning)
    assert all(key.endswith("state_dict") and ours[key] == {} for key in extra), extra


@pytest.mark.parametrize("name", ["validate_loop", "predict_loop"])
def test_epoch_loop_progress_is_a_per_dataloader_view_of_the_outer_loops(name):
    loop = getattr(alkit.Trainer(**QUIET), name)
    outer, view = loop.batch_progress, loop.epoch_loop.batch_progress
    assert isinstance(view, DataLoaderBatchProgress if name == "validate_loop" else DataLoaderStepProgress)
    assert view.total is outer.total  # one set of counters: nothing is counted twice per batch

    for _ in range(3):
        view.increment_ready()
        view.increment_started()
        view.increment_processed()
        view.increment_completed()
    assert outer.current.completed == outer.total.completed == view.current.completed == 3

    view.reset_on_run()  # a new dataloader starts: its own count from zero, the outer loop's untouched
    assert view.current.state_dict() == PROCESSED
    assert outer.current.completed == 3
    view.increment_ready()
    assert (view.current.ready, outer.current.ready, view.total.ready) == (1, 4, 4)

    # what Lightning writes to the outer counters (a checkpoint being loaded, the epoch's reset) shows through
    outer.load_state_dict(
        {"total": dict(PROCESSED, ready=9), "current": dict(PROCESSED, ready=9), "is_last_batch": True}
    )
    assert view.total.ready == 9
    outer.total.reset()
    assert view.total.state_dict() == PROCESSED


def test_view_survives_copies_and_pickling():
    trainer = alkit.Trainer(**QUIET)
    trainer.validate_loop.epoch_loop.batch_progress.increment_ready()
    for clone in (copy.deepcopy(trainer.validate_loop), pickle.loads(pickle.dumps(trainer.validate_loop))):
        view = clone.epoch_loop.batch_progress
        assert view.total is clone.batch_progress.total
        view.increment_ready()
        assert clone.batch_progress.total.ready == 2
    assert trainer.validate_loop.batch_progress.total.ready == 1


def test_last_batch_of_each_dataloader():
    outer = loops.BatchProgress()
    view = DataLoaderBatchProgress()
    view.start_dataloader(outer)
    view.max_batches = 2
    view.increment_ready()
    assert not view.is_last_batch
    view.increment_ready()
    assert view.is_last_batch and not outer.is_last_batch  # the dataloader's last batch, not the run's
    view.start_dataloader(outer)
    view.increment_ready()
    view.is_last_batch = True  # what a loop records after fetching the run's last batch
    assert outer.is_last_batch and view.is_last_batch


def test_epoch_loops_count_on_their_own_when_not_connected():
    for epoch_loop in (loops.EvaluationEpochLoop(), loops.PredictionEpochLoop()):
        progress = epoch_loop.batch_progress
        progress.increment_ready()
        progress.increment_completed()
        assert progress.total.completed == progress.current.completed == 1
        progress.reset_on_run()
        assert progress.current.completed == 0 and progress.total.completed == 1


def test_dataloader_progress_counts_ready_and_completed_only():
    progress = DataLoaderProgress()
    progress.increment_ready()
    progress.increment_completed()
    assert progress.state_dict() == {"total": {"ready": 1, "completed": 1}, "current": {"ready": 1, "completed": 1}}
    with pytest.raises(TypeError, match="doesn't have a `started` attribute"):
        progress.increment_started()
    progress.reset_on_run()
    assert progress.current.completed == 0 and progress.total.completed == 1
