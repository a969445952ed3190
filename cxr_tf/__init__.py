"""cxr-tf: chest X-ray baselines (ChestX-ray8, CheXNet, CheXpert) in Keras 3 / TensorFlow.

The package is importable without TensorFlow: the data layers (cards, sources, manifest, splits,
imaging, records writing) are pure Python/NumPy, and the TensorFlow modules (``pipeline``, models,
training) import TensorFlow only when they are imported themselves. ``cxr_tf.load_model`` is the
one exception made convenient: it imports Keras when first called.
"""

__version__ = "0.2.0"


def load_model(path, compile: bool = False):
    """Load a ``.keras`` model trained by cxr_tf: it takes grayscale pixels on 0..255 (uint8 or
    float), [B, H, W, 1] at ``cxr_tf.models.input_size_of(model)``, and returns one probability
    per ``cxr_tf.models.findings_of(model)``. Imports Keras (and TensorFlow) on first use."""
    from cxr_tf.models import load_model as _load

    return _load(path, compile=compile)
