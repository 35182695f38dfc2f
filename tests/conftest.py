"""Test-wide settings: never touch the network, keep tiny models in a temp folder.

gsplat's CUDA kernels come from splatgen's persistent cache (`splatgen.gpu.kernels`), the one
`scripts/setup.sh` builds into, so a GPU test session never recompiles them; without a GPU nothing
loads or builds them.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SPLATGEN_TINY_MODELS", str(Path(tempfile.gettempdir()) / "splatgen-test-tiny-models"))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The tiny random SD pipeline and masked LM (built once, in the real folder layouts)."""
    from splatgen.tiny_models import default_tiny_models_dir, make_tiny_models

    return make_tiny_models(default_tiny_models_dir())


@contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count set to `count` inside the block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def two_torch_threads():
    """Two intra-op threads for a module's heavier CPU work, restored after it. Set at import time
    instead, the count would leak into every other module of the session, where in-process results
    are compared bit for bit with those of child processes running with the inherited thread count."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def module_on_one_torch_thread():
    """One intra-op thread for a whole module: the tiny models are latency-bound, and a second thread
    only spins on a shared 2-core machine."""
    with torch_threads(1):
        yield


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for one test (steadier timings on a shared 2-core machine), restored after."""
    with torch_threads(1):
        yield
