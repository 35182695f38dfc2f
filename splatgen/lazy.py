"""Package namespaces that import their modules on first use (PEP 562 module `__getattr__`).

`splatgen --help` and every one-line user error must answer without importing torch, diffusers
or viser. A package `__init__` that imported all of its modules would pull them in for any
`from splatgen.pkg.small_module import X`, so packages whose modules need those libraries name
their exports here instead and each is imported when first read:

    __getattr__, __dir__ = lazy_exports(__name__, {"LiveViewer": "splatgen.viewer.live", ...})
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TypeVar

Function = TypeVar("Function", bound=Callable)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level `__getattr__` and `__dir__` serving `exports` (attribute name -> defining module)."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__


def _under_torch_context(name: str, doc: str) -> Callable[[Function], Function]:
    def decorator(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            import torch

            with getattr(torch, name)():
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    decorator.__doc__ = doc
    return decorator


no_grad = _under_torch_context("no_grad", "`@torch.no_grad()` for modules that must not import torch on import.")
inference_mode = _under_torch_context("inference_mode", "`@torch.inference_mode()`, likewise.")
