import sys
from pathlib import Path

import pytest

# `backend` is imported as a top-level package, as `python -m backend` does from the root.
ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
for path in (ROOT, TESTS):  # ... and shared test helpers as `backend_tests.<module>`
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture
def one_torch_thread():
    """One torch thread for tests of small tensors: on a shared 2-core machine extra OpenMP
    threads only add contention (measured 10x slower). Imports torch lazily: the Blender
    environment shares this conftest and has no torch."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
