"""Shared pytest set-up: markers `gpu` (skipped without CUDA), `blender`, `slow`; the tiny MIMO
weights folder (official layout) that tests read but never change; torch on one thread for a module."""
from __future__ import annotations

import os
import tempfile

import pytest

# Blender tests must never touch a user's Blender config: point Blender at a throwaway folder
# before anything imports bpy.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="mimo-test-blender-"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A tiny random MIMO weights folder in the official layout (read-only for tests)."""
    from mimo.models import make_tiny

    return make_tiny(tmp_path_factory.mktemp("weights") / "tiny")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a whole test module (`pytestmark = pytest.mark.usefixtures(
    "one_torch_thread")`): on small tensors one thread is several times faster than many on a busy
    machine, and the results do not depend on the machine's thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
