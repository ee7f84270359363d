"""Research-loop state is declared once: reset, checkpoint save and load all derive from the declaration."""

from __future__ import annotations

import pytest

from alkit.active.loop import ActiveLearningLoop
from alkit.kfold.loop import KFoldLoop
from alkit.loops.fit_wrapper import FitWrapperLoop, RunState


@pytest.mark.parametrize("loop", [KFoldLoop(3), ActiveLearningLoop()], ids=lambda loop: type(loop).__name__)
def test_every_saved_piece_of_state_round_trips_and_resets(loop):
    saved = {name for name, declared in loop.run_state.items() if declared.saved}
    assert saved  # the research loops declare their state
    state = loop.on_save_checkpoint()
    assert {name.lstrip("_") for name in saved} <= set(state)
    fresh = type(loop)(*([3] if isinstance(loop, KFoldLoop) else []))
    fresh.on_load_checkpoint(state)
    for name in saved:
        assert type(getattr(fresh, name)) is type(getattr(loop, name)), name


class CountingLoop(FitWrapperLoop):
    run_state = {**FitWrapperLoop.run_state, "_segments": RunState(int), "_cache": RunState(dict, saved=False)}


def test_a_declared_piece_of_state_is_reset_saved_and_restored():
    loop = CountingLoop()
    assert loop._segments == 0 and loop._cache == {}
    loop._segments, loop._cache = 4, {"x": 1}
    state = loop.on_save_checkpoint()
    assert state["segments"] == 4 and "cache" not in state
    other = CountingLoop()
    other.on_load_checkpoint(state)
    assert other._segments == 4 and other._cache == {}
    loop.reset()  # a new (not resumed) run
    assert loop._segments == 0 and loop._cache == {}
