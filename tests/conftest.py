import sys
from pathlib import Path

# `backend` is imported as a top-level package, as `python -m backend` does from the root.
ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
for path in (ROOT, TESTS):  # ... and shared test helpers as `backend_tests.<module>`
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
