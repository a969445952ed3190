"""cxr-tf: chest X-ray baselines (ChestX-ray8, CheXNet, CheXpert) in Keras 3 / TensorFlow.

The package is importable without TensorFlow: the data layers (cards, sources, manifest, splits,
imaging, records writing) are pure Python/NumPy, and the TensorFlow modules (``pipeline``, models,
training) import TensorFlow only when they are imported themselves.
"""

__version__ = "0.1.0"
