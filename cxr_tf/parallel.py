"""Process pools that are safe beside TensorFlow."""

from __future__ import annotations

import multiprocessing as mp
import sys


def mp_context():
    """``fork`` is cheap, but unsafe once TensorFlow is loaded in this process: then ``spawn``."""
    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")
