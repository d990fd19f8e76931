"""Seeds and the held-out split of the synthetic 4D data engine (stdlib and numpy only).

A clip depends only on its seed (and the render arguments). Seeds at or above
``HELDOUT_SEED_START`` form the fixed held-out split that every benchmark scores on; training
draws below it, so a training seed is never a held-out one.
"""

from __future__ import annotations

import numpy as np

# Seeds at or above this value form the held-out split; training never draws them.
HELDOUT_SEED_START = 1_000_000_000
HELDOUT_SEED_COUNT = 1_000_000


def sample_train_seeds(n: int, generator=None) -> np.ndarray:
    """``n`` training seeds in [0, HELDOUT_SEED_START): never a held-out seed.

    ``generator``: a numpy Generator, an int seed, or None (fresh entropy). A torch.Generator
    works through ``backend.data.synth.sample_train_seeds``.
    """
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    return rng.integers(0, HELDOUT_SEED_START, size=n, dtype=np.int64)


def heldout_seeds(n: int, start: int = 0) -> list[int]:
    """The fixed held-out seeds ``HELDOUT_SEED_START + start + i``."""
    if start + n > HELDOUT_SEED_COUNT:
        raise ValueError(f"the held-out range holds {HELDOUT_SEED_COUNT} seeds")
    return [HELDOUT_SEED_START + start + i for i in range(n)]


def is_heldout(seed: int) -> bool:
    return HELDOUT_SEED_START <= seed < HELDOUT_SEED_START + HELDOUT_SEED_COUNT
