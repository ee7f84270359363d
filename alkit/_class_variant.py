"""Same-named subclasses that carry one extra behaviour, switched on an instance by changing its class.

Lightning reads some attributes of the Trainer hundreds of times per batch. A descriptor or a property on the
class a trainer normally has would keep the interpreter from specialising every one of those reads, although the
extra behaviour is needed only in a rare state (a fit loop standing in for Lightning's ``FitLoop``). So the extra
behaviour lives on a *variant*: a subclass of the object's own class with the same name, module and docstring,
which the object wears only while it is in that state. Variants are built once per (class, kind), pickle and
deep-copy as the variant again (``ddp_spawn`` pickles the trainer), and ``base_class`` leads from a variant back
to the class the object was built as. (Changing an object's class makes CPython keep a dictionary for the instance,
so this is for objects that have one anyway, as a Trainer does; loops never change class.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: kind -> a function of the base class giving the members the variant adds
_KINDS: dict[str, Callable[[type], dict[str, Any]]] = {}


def register_kind(kind: str, members: Callable[[type], dict[str, Any]]) -> None:
    """Declare a kind of variant: ``members(base)`` gives the attributes its subclass of ``base`` adds."""
    _KINDS[kind] = members


def base_class(cls: type) -> type:
    """The class an object of class ``cls`` was built as: ``cls`` itself unless it is a variant."""
    return cls.__dict__.get("_alkit_variant_of", cls)


@functools.cache
def variant_class(base: type, kind: str) -> type:
    """The subclass of ``base`` (itself not a variant) that adds the members registered for ``kind``."""
    return type(base)(
        base.__name__,
        (base,),
        {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
            "_alkit_variant_of": base,
            "_alkit_variant_kind": kind,
            "__reduce_ex__": _reduce_variant,
            **_KINDS[kind](base),
        },
    )


def variant_kind(cls: type) -> str | None:
    """The kind of variant ``cls`` is, ``None`` for a class that is not a variant."""
    return cls.__dict__.get("_alkit_variant_kind")


def set_class(obj: Any, cls: type) -> None:
    """Make ``obj`` an instance of ``cls`` (its base class or one of its variants), without its ``__setattr__``."""
    if type(obj) is not cls:
        object.__setattr__(obj, "__class__", cls)


def _reduce_variant(obj: Any, protocol: int) -> tuple:
    # a variant is built at run time: it is pickled as its base class (importable by name) and its kind
    cls = type(obj)
    return _new_variant, (base_class(cls), variant_kind(cls)), obj.__getstate__()


def _new_variant(base: type, kind: str) -> Any:
    return object.__new__(variant_class(base, kind))
