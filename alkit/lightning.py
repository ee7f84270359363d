"""Which Lightning alkit runs on: ``lightning.pytorch`` (``import lightning as L``) or ``pytorch_lightning``.

Lightning 2 ships the same trainer under two package names, and their classes are distinct: an
``L.LightningModule`` is not a ``pytorch_lightning.LightningModule``. alkit therefore binds to one namespace per
process, chosen once, on first use, in this order:

1. the environment variable ``ALKIT_LIGHTNING`` (``lightning`` or ``pytorch_lightning``);
2. the namespace the process has already imported (``import lightning as L`` before using alkit picks
   ``lightning.pytorch``), when exactly one of the two is imported;
3. the namespace that is installed, ``pytorch_lightning`` when both are.

``pl`` below is that namespace's ``pytorch`` package (``lightning.pytorch`` or ``pytorch_lightning``); the rest of
alkit imports Lightning only through it. Handing alkit an object of the other namespace is a clear error that says
how to switch (:func:`check_namespace`), never Lightning's generic type error.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["NAMESPACE", "check_namespace", "pl"]

#: the accepted values of ``ALKIT_LIGHTNING`` and the module each one binds alkit to
_NAMESPACES = {"lightning": "lightning.pytorch", "pytorch_lightning": "pytorch_lightning"}
_ALIASES = {"lightning.pytorch": "lightning", "pytorch-lightning": "pytorch_lightning"}
ENVIRONMENT_VARIABLE = "ALKIT_LIGHTNING"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _choose() -> str:
    requested = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if requested:
        name = _ALIASES.get(requested, requested)
        if name not in _NAMESPACES:
            raise ImportError(
                f"{ENVIRONMENT_VARIABLE}={requested!r} is not a Lightning namespace alkit knows;"
                f" accepted values: {sorted(_NAMESPACES)}."
            )
        if not _installed(_NAMESPACES[name]):
            raise ImportError(
                f"{ENVIRONMENT_VARIABLE}={requested!r} asks for `{_NAMESPACES[name]}`, which is not installed"
                f" (pip install {'lightning' if name == 'lightning' else 'pytorch-lightning'})."
            )
        return name
    imported = [name for name, module in _NAMESPACES.items() if module in sys.modules]
    if len(imported) == 1:
        return imported[0]
    for name in ("pytorch_lightning", "lightning"):
        if _installed(_NAMESPACES[name]):
            return name
    raise ImportError(
        "alkit needs Lightning 2: install `lightning` or `pytorch-lightning` (pip install 'alkit[lightning]')."
    )


#: ``"lightning"`` or ``"pytorch_lightning"``: the namespace this process's alkit is bound to
NAMESPACE: str = _choose()
#: the Lightning trainer package alkit uses (``lightning.pytorch`` or ``pytorch_lightning``)
pl: ModuleType = importlib.import_module(_NAMESPACES[NAMESPACE])
_OTHER = next(name for name in _NAMESPACES if name != NAMESPACE)
_OTHER_PREFIX = _NAMESPACES[_OTHER] + "."


def _foreign_base(cls: type) -> type | None:
    """The first class in ``cls``'s MRO that comes from the Lightning namespace alkit is *not* bound to."""
    for base in cls.__mro__:
        module = getattr(base, "__module__", "") or ""
        if module.startswith(_OTHER_PREFIX) or module == _NAMESPACES[_OTHER]:
            return base
    return None


def check_namespace(value: Any, argument: str) -> None:
    """Refuse ``value`` (an object or a class, or a list of them) when it was built on the other Lightning namespace.

    Lightning itself would reject it later with "`model` must be a `LightningModule`", which does not say that the
    class *is* a LightningModule of the other package. This error says which namespace alkit is bound to and how
    to switch.
    """
    values = value if isinstance(value, list | tuple) else [value]
    for item in values:
        if item is None or isinstance(item, str | bytes | int | float):
            continue
        cls = item if isinstance(item, type) else type(item)
        foreign = _foreign_base(cls)
        if foreign is None:
            continue
        raise TypeError(
            f"`{argument}` is a {cls.__name__}, built on `{foreign.__module__}.{foreign.__qualname__}`"
            f" ({_NAMESPACES[_OTHER]}), but this process's alkit runs on `{_NAMESPACES[NAMESPACE]}`."
            f" Use one namespace per process: set the environment variable {ENVIRONMENT_VARIABLE}={_OTHER}"
            f" before Python starts (or import {'lightning' if _OTHER == 'lightning' else 'pytorch_lightning'}"
            f" before alkit), or write the class with `{_NAMESPACES[NAMESPACE]}`."
        )
