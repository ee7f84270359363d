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

import functools
import inspect
import sys
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from alkit import _seam
from alkit._seam import _FitLoop, _Loop, _TrainingEpochLoop
from alkit.lightning import pl

if TYPE_CHECKING:
    from alkit.lightning import pl

__all__ = ["FitLoopStandIn", "Loop"]


class LoopNotAttachedError(RuntimeError):
    """``loop.trainer`` was read before the loop was attached to a Trainer (Lightning 1.x raised a RuntimeError)."""


class _NotAttached:
    """What ``loop.trainer`` gives while a loop has no trainer of its own: a clear error."""

    def __get__(self, loop_class: Any, owner: type | None = None) -> Any:
        name = loop_class.__name__ if isinstance(loop_class, type) else type(loop_class).__name__
        raise LoopNotAttachedError(
            f"The loop is not attached to a Trainer yet (`{name}`). Attach it first, e.g."
            " `trainer.fit_loop = loop` or `trainer.fit_loop.epoch_loop = loop`."
        )


def _not_attached_guard() -> Any:
    """The class attribute ``trainer`` of alkit's loops; an attached loop's own ``trainer`` shadows it.

    Lightning's loop code reads ``self.trainer`` dozens of times per batch, and CPython (3.11, 3.12) specialises
    those reads only when what the instance attribute shadows is a built-in descriptor type, not a Python class's
    descriptor. ``classmethod`` is built in and hands ``__get__`` on to what it wraps (3.9-3.12), so the error is
    raised by ``_NotAttached`` while reads of an attached loop stay specialised; and no loop ever changes class (a
    changed class would make CPython keep a dictionary for the instance, slowing every attribute read).
    On 3.13, which no longer hands ``__get__`` on, the descriptor sits on the class directly.
    """
    if sys.version_info < (3, 13):
        return classmethod(_NotAttached())  # type: ignore[arg-type]
    return _NotAttached()


def _attached_trainer(loop: Any) -> Any:
    """The trainer ``loop`` (any Lightning loop) is attached to, or ``None``; never reads ``__dict__``."""
    try:
        return object.__getattribute__(loop, "trainer")
    except (AttributeError, LoopNotAttachedError):
        return None


def _own_attribute(obj: Any, name: str) -> Any:
    """``obj.<name>`` by normal lookup, bypassing a stand-in's forwarding ``__getattr__``; ``None`` when absent."""
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return None


_RUNNING = pl.trainer.states.TrainerStatus.RUNNING

#: the limits a loop takes from its Trainer when it is attached, unless it was built with them (see ``Loop``)
_TRAINER_LIMITS = ((_FitLoop, ("min_epochs", "max_epochs")), (_TrainingEpochLoop, ("min_steps", "max_steps")))


class _LoopCore(_Loop):
    """Everything of :class:`Loop` but the stand-in's attribute forwarding: the base of alkit's own loops.

    Lightning's per-batch code reads and writes attributes of these loops hundreds of times per batch; a class
    with a ``__getattr__`` cannot have those accesses specialised by the interpreter (each costs several times
    more), so the forwarding a from-scratch loop needs lives in :class:`Loop` only. ``isinstance(x, Loop)`` holds
    for every alkit loop.
    """

    # Bookkeeping that every loop has, as class-level defaults written per instance with `object.__setattr__`:
    # Lightning reads the attributes of the fit and epoch loops hundreds of times per batch, and those reads stay
    # specialised (fastest) only while the loop's `__dict__` has never been requested. So the loops on the default
    # path never read or write `loop.__dict__` / `vars(loop)` (CPython 3.11 keeps a requested dictionary for good).
    _parent_ref: Any = None  # weak reference to the loop this one is connected to
    _delegate: tuple | None = None  # (the FitLoop this loop stands in for,), see `stand_in_for`
    _given_arguments: tuple = ()  # constructor arguments given explicitly (limits: see `__new__`)
    _limits_from_trainer: dict | None = None  # limit name -> the value last taken from a Trainer
    _child_names: tuple = ()  # names under which a loop was ever assigned (see `children`)
    trainer = _not_attached_guard()  # until attached (an attached loop's own `trainer` shadows it)
    _restarting = False  # Lightning's reload flags, for minors that do not set all of them
    _loaded_from_state_dict = False
    _resuming_from_checkpoint = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Loop:
        loop = super().__new__(cls)
        # Which constructor arguments were given explicitly: a limit given to the constructor wins over the
        # Trainer's, even when it equals the default (`TrainingEpochLoop(max_steps=-1)`: no step limit).
        if (args or kwargs) and _limit_names(cls):
            object.__setattr__(loop, "_given_arguments", _given_arguments(cls, args, kwargs))
        return loop

    def __init__(self, trainer: pl.Trainer | None = None) -> None:
        object.__setattr__(self, "_parent_ref", None)
        super().__init__(trainer)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------------------------
    # trainer attachment
    # ------------------------------------------------------------------------------------------------------------
    def _attach(self, trainer: pl.Trainer | None) -> None:
        """Give this loop, its children and the loop it stands in for ``trainer`` (``None`` detaches)."""
        from alkit.lightning import pl

        if trainer is None:
            if _attached_trainer(self) is not None:
                object.__delattr__(self, "trainer")
        elif not isinstance(trainer, pl.Trainer):
            raise TypeError(
                f"`{type(self).__name__}.trainer` must be a `pytorch_lightning.Trainer`, got {type(trainer).__name__}."
            )
        else:
            # a plain instance attribute, not a property: Lightning's loop code reads it dozens of times per batch
            object.__setattr__(self, "trainer", trainer)
            if _limit_names(type(self)):
                self._take_trainer_limits(trainer)
        for child in self.children():
            child.trainer = trainer
        delegate = self.stands_in_for
        if delegate is not None and _attached_trainer(delegate) is not trainer:
            delegate.trainer = trainer

    def _take_trainer_limits(self, trainer: pl.Trainer) -> None:
        """Set the limits this loop was not built with to the Trainer's flags (see the class docstring)."""
        limits = getattr(trainer, "_alkit_loop_limits", None)
        if limits is None:
            return  # not an alkit.Trainer: its flags live only in its own loops
        given = self._given_arguments
        taken = self._limits_from_trainer  # name -> the value taken last time
        if taken is None:
            taken = {}
            object.__setattr__(self, "_limits_from_trainer", taken)
        cls = type(self)
        for name in _limit_names(cls):
            value = getattr(self, name)
            if name in taken:
                take = value == taken[name]  # unchanged since it was taken: follow this trainer
            else:
                take = value is None or (name not in given and value == _declared_default(cls, name))
            if take:
                setattr(self, name, limits[name])
                taken[name] = limits[name]
            else:
                taken.pop(name, None)

    @property
    def is_attached(self) -> bool:
        """Whether this loop has a trainer."""
        return _attached_trainer(self) is not None

    def stand_in_for(self, loop: _Loop) -> None:
        """Take the place of ``loop`` (a FitLoop) as ``trainer.fit_loop``.

        Lightning's Trainer reads and writes fit-loop internals (``trainer.fit_loop.epoch_loop.val_loop``,
        ``epoch_progress``, ``max_batches``, ...); a loop that takes the FitLoop's place without being one answers
        the names in ``alkit._seam.FIT_LOOP_STAND_IN_ATTRIBUTES`` that it does not define itself with ``loop``.
        When a FitLoop is later connected as this loop's ``fit_loop`` child, it becomes the loop stood in for.
        Stored in a tuple so that the checkpoint and child-loop machinery do not see it as a child.
        """
        if not isinstance(loop, _FitLoop):
            raise TypeError(f"A loop can stand in for a FitLoop only, got {type(loop).__name__}.")
        object.__setattr__(self, "_delegate", (loop,))

    @property
    def stands_in_for(self) -> _Loop | None:
        """The FitLoop this loop stands in for, if any (see ``stand_in_for``)."""
        delegate = self._delegate
        return delegate[0] if delegate is not None else None

    @property
    def parent(self) -> Loop | None:
        """The loop this one is connected to (``None`` for a top-level loop)."""
        ref = self._parent_ref
        return ref() if ref is not None else None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "trainer":
            self._attach(value)
            return
        # Hot path (loops set counters and flags every batch): plain values on a loop that stands in for nobody.
        if not isinstance(value, _Loop) and self._delegate is None:
            object.__setattr__(self, name, value)
            return
        if name in self._loop_aliases and isinstance(value, _Loop):
            self._set_aliased_loop(name, value)
            return
        stands_in = self._delegate is not None
        if stands_in and name in _STAND_IN_PROPERTIES and name not in self.__dict__ and not hasattr(type(self), name):
            # Lightning writes fit-loop internals too (`trainer.fit_loop._combined_loader = None`): a loop written
            # from scratch forwards the listed names it does not own, so the FitLoop doing the work sees them.
            _STAND_IN_PROPERTIES[name].fset(self, value)
            return
        if isinstance(value, _Loop) and name != "_parent_ref":
            if isinstance(value, _LoopCore):
                object.__setattr__(value, "_parent_ref", weakref.ref(self))
            if name not in self._child_names:
                object.__setattr__(self, "_child_names", (*self._child_names, name))
            if stands_in and name == "fit_loop" and isinstance(value, _FitLoop):
                object.__setattr__(self, "_delegate", (value,))  # a connected (or replaced) fit loop is stood in for
            # Lightning 1.x: a loop connected to an attached loop gets the trainer when the trainer runs (alkit's
            # Trainer attaches its loop trees again when `fit`/`validate`/`test`/`predict` start); one connected
            # while the trainer runs (a research loop switching children) gets it at once.
            trainer = _attached_trainer(self)
            if trainer is not None and trainer.state.status == _RUNNING:
                value.trainer = trainer
        object.__setattr__(self, name, value)

    #: names under which an assigned loop is connected elsewhere (see ``_set_aliased_loop``)
    _loop_aliases: dict[str, str] = {}

    def _set_aliased_loop(self, name: str, loop: _Loop) -> None:
        """Connect ``loop``, assigned as ``self.<name>`` with ``name`` in ``_loop_aliases``, where it belongs."""
        raise NotImplementedError(f"`{type(self).__name__}` lists {name!r} in `_loop_aliases` but connects nothing.")

    def __getstate__(self) -> dict[str, Any]:
        # weak references cannot be pickled (ddp_spawn pickles the trainer and its loops); parents re-link below
        state = dict(self.__dict__)
        state["_parent_ref"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for child in self.children():
            if isinstance(child, _LoopCore):
                object.__setattr__(child, "_parent_ref", weakref.ref(self))

    def children(self) -> Iterator[_Loop]:
        """The child loops connected to this loop (the attributes holding a loop)."""
        for name in self._child_names:
            value = _own_attribute(self, name)
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
        # per-batch loops run this for every batch: a hook left as the base's no-op is not called
        advance_start = None if _default_advance_start(self) else self.on_advance_start
        while not self.done:
            try:
                if advance_start is not None:
                    advance_start(*args, **kwargs)
                self.advance(*args, **kwargs)
                self.on_advance_end()
            except StopIteration:
                break
            finally:
                self.on_iteration_done()
        if self._restarting:
            self._restarting = False
        return self.on_run_end()

    #: Clear the reload flags after an iteration (``restarting`` is true only until the first one ends).
    on_iteration_done = _seam.iteration_done

    restarting = _seam.restarting_property(
        "Whether the loop's state was reloaded and its first iteration since has not finished; setting it sets the"
        " loops below too."
    )

    @property
    def loaded_from_checkpoint(self) -> bool:
        """Whether this loop's state was just loaded from a checkpoint (until its first iteration ends)."""
        return _seam.was_loaded(self)

    def load_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        """Load this loop's progress and children; afterwards the loop knows it was reloaded (every Lightning 2.x)."""
        super().load_state_dict(state_dict, prefix)
        _seam.mark_loaded(self)

    # ------------------------------------------------------------------------------------------------------------
    # composition
    # ------------------------------------------------------------------------------------------------------------
    def connect(self, **children: _Loop) -> None:
        """Wire child loops by name, e.g. ``fit_loop.connect(epoch_loop=MyEpochLoop())``.

        Only names of existing children are accepted, so a typo cannot silently add an unused loop.
        """
        known = {name for name in self._child_names if isinstance(_own_attribute(self, name), _Loop)}
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
        """Replace child loops by a class or an instance, as Lightning 1.x did, e.g. ``replace(fit_loop=FitLoop)``.

        A class is instantiated with the replaced loop's constructor arguments, read back from its attributes (a
        clear error when one cannot be read back or the new class does not take one). The replaced loop's children
        are connected to the new loop (an instance gets them where it has a child of that name) and the new loop is
        attached in its place. Its own progress starts fresh, as a new loop's does: only what Lightning's connectors
        set on the replaced loop (its data source and loaded data) is carried across, so that the Trainer feeds the
        new loop as it fed the old one.
        """
        known = {name for name in self._child_names if isinstance(_own_attribute(self, name), _Loop)}
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
                new = type_or_loop(**_constructor_arguments(type_or_loop, old, f"{type(self).__name__}", name))
            elif isinstance(type_or_loop, _Loop):
                new = type_or_loop
            else:
                raise TypeError(
                    f"`replace({name}=...)` expects a loop class or instance, got {type(type_or_loop).__name__}."
                )
            _connect_children(old, new)
            _seam.carry_wiring(old, new)
            trainer = _attached_trainer(self) or _attached_trainer(old)
            if trainer is not None:
                new.trainer = trainer
            new_children[name] = new
        for name, new in new_children.items():
            setattr(self, name, new)  # connects it (and attaches it when this loop is attached)


class _LoopMeta(type):
    """Makes alkit's own loops (subclasses of ``_LoopCore``) instances and subclasses of :class:`Loop`."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls.__dict__.get("_is_public_loop"):
            return isinstance(instance, _LoopCore)
        return super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        if cls.__dict__.get("_is_public_loop"):
            return issubclass(subclass, _LoopCore)
        return super().__subclasscheck__(subclass)


class Loop(_LoopCore, metaclass=_LoopMeta):
    """Base class for every alkit loop; subclass it and implement ``done`` and ``advance``.

    A loop is constructed without a trainer; reading ``loop.trainer`` before it is attached is a clear error. It is
    attached when assigned to a trainer
    (``trainer.fit_loop = loop``) or to an attached loop (``trainer.fit_loop.epoch_loop = loop``); attaching a loop
    attaches all of its children, including children assigned later.

    Limits a loop was not built with are the Trainer's: a ``FitLoop`` takes ``Trainer(min_epochs, max_epochs)``
    and a ``TrainingEpochLoop`` ``Trainer(min_steps, max_steps)`` when attached, unless the constructor was given
    them (a value other than ``None``) or a subclass's ``__init__`` set them to something other than its default.
    The ``limit_*_batches`` flags are read from the Trainer while the loops run.
    """

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails.
        # A loop written from scratch that takes the FitLoop's place answers the fit-loop reads Lightning makes
        # (`trainer.fit_loop.epoch_loop`, `.epoch_progress`, ...: the names listed in the seam) with the FitLoop it
        # stands in for. Any other name is this loop's own: a misspelling is an AttributeError.
        if self._delegate is not None:
            forwarded = _STAND_IN_PROPERTIES.get(name)
            if forwarded is not None:
                return forwarded.fget(self)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    #: alkit's own loops are `Loop`s for `isinstance`/`issubclass`, without the forwarding `__getattr__`
    _is_public_loop = True


def _default_advance_start(loop: Loop) -> bool:
    """Whether ``loop.on_advance_start`` is the base class's no-op."""
    return getattr(loop.on_advance_start, "__func__", None) is _LoopCore.on_advance_start


def _wrapped_fit_loop(loop: Any) -> _Loop:
    delegate = getattr(loop, "_delegate", None)
    if delegate is None:
        raise RuntimeError(
            f"`{type(loop).__name__}` wraps no FitLoop: call `loop.connect(trainer.fit_loop)` before"
            " `trainer.fit_loop = loop`."
        )
    return delegate[0]


#: one property per fit-loop attribute Lightning reads or writes on ``trainer.fit_loop``, answered by the FitLoop a
#: stand-in wraps (see ``Loop.stand_in_for``)
_STAND_IN_PROPERTIES: dict[str, property] = _seam.fit_loop_stand_in_properties(_wrapped_fit_loop)

FitLoopStandIn: type = type(
    "FitLoopStandIn",
    (),
    {
        "__module__": __name__,
        "__doc__": (
            "Mixin of a loop that takes the FitLoop's place (``trainer.fit_loop = loop``) and runs the FitLoop it"
            " wraps.\n\nEach fit-loop attribute Lightning reads or writes on ``trainer.fit_loop`` (the names in"
            " ``alkit._seam.FIT_LOOP_STAND_IN_ATTRIBUTES``) is a property answered by the wrapped FitLoop; any other"
            " name is the loop's own, so a misspelled attribute is an ``AttributeError`` rather than a read of the"
            " wrapped loop. A subclass keeps one of these names for itself with a class attribute of that name."
        ),
        "__slots__": (),
        **_STAND_IN_PROPERTIES,
    },
)


def _limit_names(cls: type) -> tuple[str, ...]:
    for base, names in _TRAINER_LIMITS:
        if issubclass(cls, base):
            return names
    return ()


def _given_arguments(cls: type, args: tuple, kwargs: dict) -> frozenset[str]:
    """The names of the constructor arguments given explicitly (by position or keyword) to ``cls(*args, **kwargs)``."""
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return frozenset(kwargs)  # the constructor itself will say what is wrong
    given = set()
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            given.add(name)
    return frozenset(given)


@functools.cache
def _declared_default(cls: type, name: str) -> Any:
    """The default of ``name`` in the nearest ``__init__`` of ``cls``'s MRO that declares it."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameter = inspect.signature(init).parameters.get(name)
        if parameter is not None:
            return parameter.default
    return inspect.Parameter.empty


def _init_parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named parameters of ``cls.__init__`` (not ``self``/``trainer``) and whether it takes ``**kwargs``."""
    named: dict[str, inspect.Parameter] = {}
    var_keyword = False
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            var_keyword = True
        elif name not in ("self", "trainer") and parameter.kind is not parameter.VAR_POSITIONAL:
            named[name] = parameter
    return named, var_keyword


def _constructor_arguments(cls: type[_Loop], old: _Loop, owner: str, child: str) -> dict[str, Any]:
    """Read the arguments for ``cls.__init__`` back from the attributes of the loop it replaces (Lightning 1.x)."""
    parameters, takes_any = _init_parameters(cls)
    old_parameters, _ = _init_parameters(type(old))
    kwargs: dict[str, Any] = {}
    unreadable = []
    for name, parameter in parameters.items():
        try:
            kwargs[name] = getattr(old, name)
        except AttributeError:
            if parameter.default is parameter.empty:
                unreadable.append(name)
    dropped = [name for name in old_parameters if name not in parameters and not takes_any and hasattr(old, name)]
    problems = []
    if unreadable:
        problems.append(f"the replaced {type(old).__name__} has no attribute for the required argument(s) {unreadable}")
    if dropped:
        problems.append(
            f"{cls.__name__} does not take {dropped}, which the replaced {type(old).__name__} was built with"
        )
    if problems:
        raise LoopReplaceError(
            f"`{owner}.replace({cls.__name__})` (as `replace({child}={cls.__name__})`) builds {cls.__name__} from the"
            f" `__init__` arguments of the loop it replaces, `{type(old).__name__}`, but {' and '.join(problems)}."
            f" Pass an instance instead: `replace({child}={cls.__name__}(...))`."
        )
    return kwargs


class LoopReplaceError(TypeError, pl.utilities.exceptions.MisconfigurationException):
    """``replace(name=Class)`` cannot build ``Class`` from the replaced loop: a ``TypeError`` (a wrong argument) that
    1.x code catching Lightning 1.x's ``MisconfigurationException`` still catches."""


def _connect_children(old: _Loop, new: _Loop) -> None:
    """Connect ``old``'s child loops to ``new`` where ``new`` has a child of the same name (Lightning 1.x)."""
    for name, value in list(vars(old).items()):  # `old` is discarded: reading its `__dict__` costs nothing later
        if isinstance(value, _Loop) and isinstance(_own_attribute(new, name), _Loop):
            setattr(new, name, value)
