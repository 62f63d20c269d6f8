"""The training scripts under ``train/`` (not a package) imported as modules by the tests; they
need torch and scikit-learn, so a test that loads one is skipped where those are absent."""

import importlib
import sys
from pathlib import Path

import pytest

TRAIN = Path(__file__).resolve().parent.parent / "train"


def load(name: str):
    """``train/<name>.py`` as a module (skips the calling test without torch or scikit-learn)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(TRAIN))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)
