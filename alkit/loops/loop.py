"""The public ``Loop`` base class: the Lightning 1.x loop contract, on Lightning 2.

Lightning 2 keeps loops internally (``pytorch_lightning.loops._Loop``) but they need a trainer at construction,
have no common ``run`` contract, cannot be connected or replaced, and the Trainer never expects a user loop.
``Loop`` restores the 1.x contract on top of ``_Loop`` so that a loop written for Lightning 1.5–1.9 runs here::

    loop.run(*args, **kwargs)
    # is
    if loop.skip:
        return loop.on_skip()
    loop.reset()
    loop.on_run_start(*args, **kwargs)
    while not loop.done:
        try:
            loop.on_advance_start(*args, **kwargs)
            loop.advance(*args, **kwargs)
            loop.on_advance_end()
        except StopIteration:
            break
    return loop.on_run_end()

Subclassing ``_Loop`` (rather than re-implementing it) keeps Lightning's own checkpoint machinery working:
progress trackers and child loops found in ``vars(loop)`` are written to and read from ``checkpoint["loops"]``.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from alkit._seam import _BaseProgress, _Loop
from alkit.lightning import pl

if TYPE_CHECKING:
    from alkit.lightning import pl

__all__ = ["Loop"]


class Loop(_Loop):
    """Base class for every alkit loop; subclass it and implement ``done`` and ``advance``.

    A loop is constructed without a trainer; reading ``loop.trainer`` before it is attached is a clear error. It is
    attached when assigned to a trainer
    (``trainer.fit_loop = loop``) or to an attached loop (``trainer.fit_loop.epoch_loop = loop``); attaching a loop
    attaches all of its children, including children assigned later.
    """

    #: Attributes that are not constructor arguments but wire the loop to the Trainer's data and results
    #: (set by Lightning's connectors). ``replace()`` moves them to the new loop so a replacement is transparent.
    _carried_attributes: tuple[str, ...] = ()

    def __init__(self, trainer: pl.Trainer | None = None) -> None:
        self.__dict__["_parent_ref"] = None
        super().__init__(trainer)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------------------------
    # trainer attachment
    # ------------------------------------------------------------------------------------------------------------
    def _attach(self, trainer: pl.Trainer | None) -> None:
        """Give this loop, its children and the loop it stands in for ``trainer`` (``None`` detaches)."""
        from alkit.lightning import pl

        if trainer is None:
            self.__dict__.pop("trainer", None)
        elif not isinstance(trainer, pl.Trainer):
            raise TypeError(
                f"`{type(self).__name__}.trainer` must be a `pytorch_lightning.Trainer`, got {type(trainer).__name__}."
            )
        else:
            # a plain instance attribute, not a property: Lightning's loop code reads it dozens of times per batch
            self.__dict__["trainer"] = trainer
        for child in self.children():
            child.trainer = trainer
        delegate = self.stands_in_for
        if delegate is not None and delegate.__dict__.get("trainer") is not trainer:
            delegate.trainer = trainer

    @property
    def is_attached(self) -> bool:
        """Whether this loop has a trainer."""
        return self.__dict__.get("trainer") is not None

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails.
        if name == "trainer":
            raise RuntimeError(
                f"The loop `{type(self).__name__}` is not attached to a Trainer yet. Attach it first, e.g."
                " `trainer.fit_loop = loop` or `trainer.fit_loop.epoch_loop = loop`."
            )
        # A loop standing in for the FitLoop (a research loop wrapping it, or
        # a loop written from scratch) forwards the reads Lightning's Trainer makes (`fit_loop.epoch_loop`,
        # `fit_loop.epoch_progress`, ...) to the FitLoop it stands in for.
        delegate = self.__dict__.get("_delegate")
        if delegate is not None and not (name.startswith("__") and name.endswith("__")):
            return getattr(delegate[0], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def stand_in_for(self, loop: _Loop) -> None:
        """Forward attribute reads this loop cannot answer to ``loop`` (the FitLoop it replaces).

        Lightning's Trainer reads fit-loop internals (``trainer.fit_loop.epoch_loop.val_loop``, ``epoch_progress``,
        ...); a loop that takes the FitLoop's place without being one answers those reads through ``loop``.
        Stored in a tuple so that the checkpoint and child-loop machinery do not see it as a child.
        """
        self.__dict__["_delegate"] = (loop,)

    @property
    def stands_in_for(self) -> _Loop | None:
        """The loop attribute reads are forwarded to, if any (see ``stand_in_for``)."""
        delegate = self.__dict__.get("_delegate")
        return delegate[0] if delegate is not None else None

    @property
    def parent(self) -> Loop | None:
        """The loop this one is connected to (``None`` for a top-level loop)."""
        ref = self.__dict__.get("_parent_ref")
        return ref() if ref is not None else None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "trainer":
            self._attach(value)
            return
        # Hot path (loops set counters and flags every batch): plain values on a loop that stands in for nobody.
        if not isinstance(value, _Loop) and "_delegate" not in self.__dict__:
            object.__setattr__(self, name, value)
            return
        delegate = self.__dict__.get("_delegate")
        if (
            delegate is not None
            and name not in self.__dict__
            and not hasattr(type(self), name)
            and hasattr(delegate[0], name)
        ):
            # Lightning writes fit-loop internals too (`trainer.fit_loop._combined_loader = None`): a stand-in
            # forwards writes of attributes it does not own, so the FitLoop doing the work sees them.
            setattr(delegate[0], name, value)
            return
        if isinstance(value, _Loop) and name != "_parent_ref":
            if isinstance(value, Loop):
                value.__dict__["_parent_ref"] = weakref.ref(self)
            if self.__dict__.get("trainer") is not None:
                value.trainer = self.__dict__["trainer"]
        object.__setattr__(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        # weak references cannot be pickled (ddp_spawn pickles the trainer and its loops); parents re-link below
        state = dict(self.__dict__)
        state["_parent_ref"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for child in self.children():
            if isinstance(child, Loop):
                child.__dict__["_parent_ref"] = weakref.ref(self)

    def children(self) -> Iterator[_Loop]:
        """The child loops connected to this loop (the attributes holding a loop)."""
        for value in list(vars(self).values()):
            if isinstance(value, _Loop):
                yield value

    # ------------------------------------------------------------------------------------------------------------
    # the run contract
    # ------------------------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Whether the loop is finished; checked before every iteration."""
        raise NotImplementedError(f"`{type(self).__name__}` must implement the `done` property.")

    @property
    def skip(self) -> bool:
        """Whether to skip the whole run (``run`` then returns ``on_skip()``)."""
        return False

    def on_skip(self) -> Any:
        """Called instead of the run when ``skip`` is true; its value is what ``run`` returns."""
        return None

    def reset(self) -> None:
        """Reset the loop's internal state before a run (a reloaded loop keeps its progress: see ``restarting``)."""

    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        """Called once at the start of ``run`` with ``run``'s arguments."""

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        """Called before every ``advance`` with ``run``'s arguments."""

    def advance(self, *args: Any, **kwargs: Any) -> None:
        """One iteration of the loop; raise ``StopIteration`` to end the run early."""
        raise NotImplementedError(f"`{type(self).__name__}` must implement `advance`.")

    def on_advance_end(self) -> None:
        """Called after every ``advance``."""

    def on_run_end(self) -> Any:
        """Called once at the end of ``run``; its value is what ``run`` returns."""
        return None

    def teardown(self) -> None:
        """Release resources (dataloader iterators, ...) at the end of a trainer stage."""
        for child in self.children():
            teardown = getattr(child, "teardown", None)
            if callable(teardown):
                teardown()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the loop until ``done`` (see the module docstring for the exact sequence of calls)."""
        if self.skip:
            return self.on_skip()
        self.reset()
        self.on_run_start(*args, **kwargs)
        while not self.done:
            try:
                self.on_advance_start(*args, **kwargs)
                self.advance(*args, **kwargs)
                self.on_advance_end()
            except StopIteration:
                break
            finally:
                self.on_iteration_done()
        if self._restarting:
            self._restarting = False
        return self.on_run_end()

    def on_iteration_done(self) -> None:
        """Clear the reload flags after an iteration (``restarting`` is true only until the first one ends)."""
        # Skipping the writes when nothing is set keeps the per-batch loops cheap (this runs for every batch).
        if self._restarting or self._loaded_from_state_dict or self._resuming_from_checkpoint:
            super().on_iteration_done()
        else:
            self.reset_restart_stage()

    # ------------------------------------------------------------------------------------------------------------
    # composition
    # ------------------------------------------------------------------------------------------------------------
    def connect(self, **children: _Loop) -> None:
        """Wire child loops by name, e.g. ``fit_loop.connect(epoch_loop=MyEpochLoop())``.

        Only names of existing children are accepted, so a typo cannot silently add an unused loop.
        """
        known = {name for name, value in vars(self).items() if isinstance(value, _Loop)}
        for name, loop in children.items():
            if not isinstance(loop, _Loop):
                raise TypeError(
                    f"`{type(self).__name__}.connect({name}=...)` expects a loop (an `alkit.loops.Loop` instance),"
                    f" got {type(loop).__name__}."
                )
            if known and name not in known:
                raise ValueError(
                    f"`{type(self).__name__}` has no child loop named {name!r}; its children are {sorted(known)}."
                )
            setattr(self, name, loop)

    def replace(self, **children: type[_Loop] | _Loop) -> None:
        """Replace child loops by a class or an instance, keeping what the replaced loop carried.

        A class is instantiated with the replaced loop's constructor arguments (read back from its attributes);
        the replaced loop's own children, progress trackers, checkpoint state and trainer wiring move to the new
        loop, which is then connected. This makes ``fit_loop.replace(epoch_loop=MyEpochLoop)`` transparent: the
        new epoch loop keeps ``min_steps``/``max_steps``, the validation and optimization loops, and the step count.
        """
        known = {name for name, value in vars(self).items() if isinstance(value, _Loop)}
        new_children: dict[str, _Loop] = {}
        for name, type_or_loop in children.items():
            if name not in known:
                raise ValueError(
                    f"`{type(self).__name__}.replace({name}=...)`: no child loop named {name!r};"
                    f" its children are {sorted(known)}."
                )
            old = getattr(self, name)
            if isinstance(type_or_loop, type):
                if not issubclass(type_or_loop, _Loop):
                    raise TypeError(
                        f"`replace({name}=...)` expects a loop class or instance, got the class"
                        f" {type_or_loop.__name__}, which is not a loop."
                    )
                new = type_or_loop(**_constructor_arguments(type_or_loop, old))
            elif isinstance(type_or_loop, _Loop):
                new = type_or_loop
            else:
                raise TypeError(
                    f"`replace({name}=...)` expects a loop class or instance, got {type(type_or_loop).__name__}."
                )
            _move_state(old, new)
            new_children[name] = new
        for name, new in new_children.items():
            setattr(self, name, new)


def _constructor_arguments(cls: type[_Loop], old: _Loop) -> dict[str, Any]:
    """Read the arguments for ``cls.__init__`` back from the attributes of the loop it replaces."""
    kwargs: dict[str, Any] = {}
    missing = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "trainer") or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(old, name):
            kwargs[name] = getattr(old, name)
        elif parameter.default is parameter.empty:
            missing.append(name)
    if missing:
        raise TypeError(
            f"Cannot instantiate {cls.__name__} in place of {type(old).__name__}: the replaced loop has no attribute"
            f" for the required argument(s) {missing}. Pass an instance instead of the class."
        )
    return kwargs


def _move_state(old: _Loop, new: _Loop) -> None:
    """Move children, progress trackers, checkpoint state and trainer wiring from ``old`` to ``new``."""
    new_vars = vars(new)
    for name, value in list(vars(old).items()):
        if isinstance(value, _Loop) and name in new_vars:
            setattr(new, name, value)
        elif isinstance(value, _BaseProgress) and isinstance(new_vars.get(name), type(value)):
            new_vars[name].load_state_dict(value.state_dict())
    for name in getattr(old, "_carried_attributes", ()):
        if name in vars(old) and name in new_vars:
            setattr(new, name, getattr(old, name))
    state = old.on_save_checkpoint()
    if state:
        new.on_load_checkpoint(state)
