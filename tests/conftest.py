"""Shared test set-up: the repo root on sys.path, so tests run from a checkout as well as installed."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
